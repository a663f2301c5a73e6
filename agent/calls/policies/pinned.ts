import { candidate, type Policy } from './policy.js'

/** `--local`: here only, waiting in the local queue if needed. */
export const localOnly: Policy = {
  name: 'local',
  rank ({ self }) {
    return { candidates: [candidate(self, 'asked to run locally', true)], skipped: [] }
  }
}

/** `--peer ID`: that peer only (or here, if ID is this agent), waiting in its queue if it is busy. No fallback. */
export const pinnedPeer: Policy = {
  name: 'peer',
  rank ({ self, peers, target }) {
    if (target === undefined || target === self.peerId) return { candidates: [candidate(self, 'asked for this agent', true)], skipped: [] }
    const p = peers.find(c => c.peerId === target)
    if (p === undefined) return { candidates: [], skipped: [{ peerId: target, reason: 'not in the peer table (unknown or silent)' }] }
    return { candidates: [candidate(p, 'asked for this peer', true)], skipped: [] }
  }
}
