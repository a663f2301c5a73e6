/** Errors raised by the agent itself (wire errors live in protocol/errors.ts). */
export class ConfigError extends Error {
  override name = 'ConfigError'
}

/** An address this agent was to listen on (API, libp2p, CoAP) is taken: another agent, most likely. */
export class AddressInUseError extends Error {
  override name = 'AddressInUseError'
}

/** No place in the swarm (this agent, its peers) can start the call in time for its deadline. */
export class OverloadedError extends Error {
  override name = 'OverloadedError'
  readonly code = 'OVERLOADED'
  /** When the soonest place expects room again, in ms (an HTTP `Retry-After`). */
  readonly retryAfterMs: number | undefined
  constructor (message: string, init: { retryAfterMs?: number, cause?: unknown } = {}) {
    super(message, { cause: init.cause })
    this.retryAfterMs = init.retryAfterMs
  }
}

export class NoCandidateError extends Error {
  override name = 'NoCandidateError'
  readonly code = 'NO_CANDIDATE'
}

/** Holding more code would exceed this agent's storage quota, and nothing may be evicted. */
export class StorageFullError extends Error {
  override name = 'StorageFullError'
  readonly code = 'STORAGE_FULL'
}

/** A signed record names a version that is not newer than the one known (a deploy or delete raced another). */
export class VersionConflictError extends Error {
  override name = 'VersionConflictError'
  readonly code = 'VERSION_CONFLICT'
}

/** `edge-agent init --join`: the token is not valid, or the inviting device could not be reached or refused. */
export class JoinError extends Error {
  override name = 'JoinError'
}

/** Another agent runs on this data directory. */
export class DataDirLockedError extends Error {
  override name = 'DataDirLockedError'
}
