import { byHoldsThenRtt, candidate, rankPool, type Policy } from './policy.js'

/**
 * `--near`: the place with the lowest measured RTT that holds the function and has a free slot.
 * This agent counts as RTT 0, but only while it has a free slot. Places that would have to fetch
 * the code come after every holder.
 */
export const near: Policy = {
  name: 'near',
  rank: (input) => rankPool(input, pool => pool.sort(byHoldsThenRtt).map(c => candidate(c, c.holds ? 'nearest holder' : 'nearest with a free slot')),
    'queue locally: no place had a free slot')
}
