import { byHoldsThenRtt, candidate, withFreeSlots, type Policy, type Ranking } from './policy.js'

/**
 * `--near`: the place with the lowest measured RTT that holds the function and has a free slot.
 * This agent counts as RTT 0, but only while it has a free slot. Places that would have to fetch
 * the code come after every holder.
 */
export const near: Policy = {
  name: 'near',
  rank ({ self, peers }) {
    const skipped: Ranking['skipped'] = []
    const pool = withFreeSlots(peers, skipped)
    if (self.freeSlots > 0) pool.push(self)
    const candidates = pool.sort(byHoldsThenRtt).map(c => candidate(c, c.holds ? 'nearest holder' : 'nearest with a free slot'))
    if (self.freeSlots === 0) candidates.push(candidate(self, 'queue locally: no place had a free slot', true))
    return { candidates, skipped }
  }
}
