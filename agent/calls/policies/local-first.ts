import { byHoldsThenRtt, candidate, rankPool, type Policy } from './policy.js'

/** Default: run here; when every local slot is busy, offload to a peer; as a last resort, queue here. */
export const localFirst: Policy = {
  name: 'local-first',
  rank: (input) => rankPool(input, pool => {
    const here = input.self.freeSlots > 0
    return [
      ...(here ? [candidate(input.self, 'free local slot')] : []),
      ...pool.filter(c => !c.local).sort(byHoldsThenRtt).map(p => candidate(p, here ? 'offload if running here fails' : 'offload: local slots busy'))
    ]
  }, 'queue locally: no peer took it')
}
