import { byLoad, candidate, loadOf, rankPool, type CandidateView, type Policy } from './policy.js'
import { pct } from './least-loaded.js'

/**
 * `p2c` (power of two choices): two places with a free slot drawn at random, the less loaded of the
 * two first. Nearly as even as least-loaded, without every caller rushing the same place between
 * two adverts (its load figures are up to a second old). The rest follow, least loaded first.
 */
export const powerOfTwo: Policy = {
  name: 'p2c',
  rank: (input) => rankPool(input, pool => {
    const random = input.random ?? Math.random
    if (pool.length < 2) return pool.map(c => candidate(c, 'the only place with a free slot'))
    const i = Math.floor(random() * pool.length)
    let j = Math.floor(random() * (pool.length - 1))
    if (j >= i) j++
    const drawn = ([pool[i], pool[j]] as [CandidateView, CandidateView]).sort(byLoad)
    const rest = pool.filter(c => !drawn.includes(c)).sort(byLoad)
    return [
      candidate(drawn[0], `drawn, less loaded of two (${pct(loadOf(drawn[0]))} vs ${pct(loadOf(drawn[1]))})`),
      candidate(drawn[1], 'drawn, the other of two'),
      ...rest.map(c => candidate(c, `not drawn; load ${pct(loadOf(c))}`))
    ]
  }, 'queue locally: no place had a free slot')
}
