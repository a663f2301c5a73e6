import { byHoldsThenRtt, byLoad, candidate, rankPool, type CandidateView, type Policy } from './policy.js'

/**
 * `warm-affinity`: a place where the function is warm (a started container, a compiled module)
 * first, so calls skip cold starts; among warm places, this agent, then the least loaded. Without
 * a warm place with a free slot, it ranks as local-first does.
 */
export const warmAffinity: Policy = {
  name: 'warm-affinity',
  rank: (input) => rankPool(input, pool => {
    const warm = pool.filter(c => c.warm).sort(localThen(byLoad))
    const cold = pool.filter(c => !c.warm).sort(localThen(byHoldsThenRtt))
    return [
      ...warm.map(c => candidate(c, 'warm here')),
      ...cold.map(c => candidate(c, c.local ? 'cold: free local slot' : 'cold: offload'))
    ]
  }, 'queue locally: no place had a free slot')
}

function localThen (order: (a: CandidateView, b: CandidateView) => number): (a: CandidateView, b: CandidateView) => number {
  return (a, b) => a.local !== b.local ? (a.local ? -1 : 1) : order(a, b)
}
