import { localFirst } from './local-first.js'
import { near } from './near.js'
import { localOnly, pinnedPeer } from './pinned.js'
import type { Policy } from './policy.js'

export type { Candidate, CandidateView, Policy, PolicyInput, Ranking } from './policy.js'
export { localFirst, near, localOnly, pinnedPeer }

export const POLICIES: Record<string, Policy> = {
  'local-first': localFirst,
  near,
  local: localOnly,
  peer: pinnedPeer
}
