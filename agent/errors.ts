/** Errors raised by the agent itself (wire errors live in protocol/errors.ts). */
export class ConfigError extends Error {
  override name = 'ConfigError'
}

/** Every local slot is busy, the queue is full and no peer can take the call. */
export class OverloadedError extends Error {
  override name = 'OverloadedError'
  readonly code = 'OVERLOADED'
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
