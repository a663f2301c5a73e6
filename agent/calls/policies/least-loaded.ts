import { byLoad, candidate, loadOf, rankPool, type Policy } from './policy.js'

/**
 * `least-loaded`: the place with the smallest share of busy slots (and queued calls), this agent
 * included; among equals, holders of the code, then the nearest. Spreads work evenly over a swarm
 * of unequal devices, at the price of more remote calls than local-first.
 */
export const leastLoaded: Policy = {
  name: 'least-loaded',
  rank: (input) => rankPool(input, pool => pool.sort(byLoad).map(c => candidate(c, `load ${pct(loadOf(c))}`)), 'queue locally: no place had a free slot')
}

export function pct (load: number): string {
  return `${Math.round(load * 100)}%`
}
