import { localFirst } from './local-first.js'
import { near } from './near.js'
import { leastLoaded } from './least-loaded.js'
import { powerOfTwo } from './p2c.js'
import { warmAffinity } from './warm-affinity.js'
import { localOnly, pinnedPeer } from './pinned.js'
import { weighted, weights } from './weighted.js'
import type { Policy } from './policy.js'

export type { Candidate, CandidateView, Policy, PolicyInput, Ranking } from './policy.js'
export { localFirst, near, leastLoaded, powerOfTwo, warmAffinity, weighted, weights, localOnly, pinnedPeer }
export { expectedMs } from './policy.js'

export const POLICIES: Record<string, Policy> = {
  'local-first': localFirst,
  near,
  'least-loaded': leastLoaded,
  p2c: powerOfTwo,
  'warm-affinity': warmAffinity,
  weighted,
  local: localOnly,
  peer: pinnedPeer
}
