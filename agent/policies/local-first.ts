import { byHoldsThenRtt, candidate, withFreeSlots, type Policy, type Ranking } from './policy.js'

/** Default: run here; when every local slot is busy, offload to a peer; as a last resort, queue here. */
export const localFirst: Policy = {
  name: 'local-first',
  rank ({ self, peers }) {
    const skipped: Ranking['skipped'] = []
    const candidates = []
    if (self.freeSlots > 0) candidates.push(candidate(self, 'free local slot'))
    for (const p of withFreeSlots(peers, skipped).sort(byHoldsThenRtt)) candidates.push(candidate(p, self.freeSlots > 0 ? 'offload if running here fails' : 'offload: local slots busy'))
    if (self.freeSlots === 0) candidates.push(candidate(self, 'queue locally: no peer took it', true))
    return { candidates, skipped }
  }
}
