/**
 * Wire error codes and the error classes they map to on the caller's side.
 * A code crosses the wire; a class is what code in this process catches (by `.name`).
 */
export const WireCode = {
  BUSY: 'BUSY',
  NOT_FOUND: 'NOT_FOUND',
  TIMEOUT: 'TIMEOUT',
  FUNCTION_ERROR: 'FUNCTION_ERROR',
  BAD_REQUEST: 'BAD_REQUEST',
  FETCH_FAILED: 'FETCH_FAILED',
  UNTRUSTED: 'UNTRUSTED',
  CANCELLED: 'CANCELLED',
  INTERRUPTED: 'INTERRUPTED',
  INTERNAL: 'INTERNAL'
} as const
export type WireCode = typeof WireCode[keyof typeof WireCode]

export class InvalidMessageError extends Error {
  override name = 'InvalidMessageError'
}

export class MessageTooLargeError extends Error {
  override name = 'MessageTooLargeError'
}

/**
 * A peer (or the local runtime) has no free slot right now, or could not start the call before its
 * deadline. Flow control, not a fault: it has no stack trace. A flood of calls is answered with
 * thousands of these a second, and capturing each one's stack was ~3 % of the agent's CPU then.
 */
export class BusyError extends Error {
  override name = 'BusyError'
  readonly code = WireCode.BUSY
  /** When room is expected again, in ms, if known. */
  readonly retryAfterMs: number | undefined
  constructor (message: string, init: { retryAfterMs?: number, cause?: unknown } = {}) {
    const limit = Error.stackTraceLimit
    Error.stackTraceLimit = 0
    super(message, { cause: init.cause })
    Error.stackTraceLimit = limit
    this.retryAfterMs = init.retryAfterMs
  }
}

/** Whoever asked for the call gave up on it (an HTTP client that left, a cancel frame): it was stopped. */
export class CancelledError extends Error {
  override name = 'CancelledError'
  readonly code = WireCode.CANCELLED
}

/** The agent running (or sending) the call is stopping: the call was cut off, not failed by the function. */
export class InterruptedError extends Error {
  override name = 'InterruptedError'
  readonly code = WireCode.INTERRUPTED
}

/**
 * What to fail a call with when its signal aborts: the reason itself when it is one of ours
 * (cancelled, interrupted, …), else a deadline.
 */
export function abortError (signal: AbortSignal, message: string): Error {
  const reason: unknown = signal.reason
  if (reason instanceof Error && typeof (reason as { code?: unknown }).code === 'string' && reason.name !== 'AbortError' && reason.name !== 'TimeoutError') return reason
  return new DeadlineExceededError(message)
}

export class FunctionNotFoundError extends Error {
  override name = 'FunctionNotFoundError'
  readonly code = WireCode.NOT_FOUND
}

export class DeadlineExceededError extends Error {
  override name = 'DeadlineExceededError'
  readonly code = WireCode.TIMEOUT
}

/** The function ran and failed: non-zero exit, trap, or killed for exceeding a limit. */
export class FunctionError extends Error {
  override name = 'FunctionError'
  readonly code = WireCode.FUNCTION_ERROR
  readonly stderr: string
  readonly exitCode: number | undefined
  constructor (message: string, init: { stderr?: string, exitCode?: number, cause?: unknown } = {}) {
    super(message, { cause: init.cause })
    this.stderr = init.stderr ?? ''
    this.exitCode = init.exitCode
  }
}

export class BadRequestError extends Error {
  override name = 'BadRequestError'
  readonly code = WireCode.BAD_REQUEST
}

export class FetchFailedError extends Error {
  override name = 'FetchFailedError'
  readonly code = WireCode.FETCH_FAILED
}

export class RemoteInternalError extends Error {
  override name = 'RemoteInternalError'
  readonly code = WireCode.INTERNAL
}

/** No manifest signed by a key this agent trusts vouches for the function. */
export class UntrustedManifestError extends Error {
  override name = 'UntrustedManifestError'
  readonly code = WireCode.UNTRUSTED
  /** The signer this agent does not trust, when that is the reason (not a missing manifest). */
  readonly signer: string | undefined
  constructor (message: string, init: { signer?: string, cause?: unknown } = {}) {
    super(message, { cause: init.cause })
    this.signer = init.signer
  }
}

/** The connection or stream to a peer ended before it answered. Safe to retry elsewhere. */
export class PeerGoneError extends Error {
  override name = 'PeerGoneError'
}

export function errorFromWire (code: WireCode, message: string, stderr?: string, retryAfterMs?: number): Error {
  switch (code) {
    case WireCode.BUSY: return new BusyError(message, retryAfterMs === undefined ? {} : { retryAfterMs })
    case WireCode.CANCELLED: return new CancelledError(message)
    case WireCode.INTERRUPTED: return new InterruptedError(message)
    case WireCode.NOT_FOUND: return new FunctionNotFoundError(message)
    case WireCode.TIMEOUT: return new DeadlineExceededError(message)
    case WireCode.FUNCTION_ERROR: return new FunctionError(message, stderr === undefined ? {} : { stderr })
    case WireCode.BAD_REQUEST: return new BadRequestError(message)
    case WireCode.FETCH_FAILED: return new FetchFailedError(message)
    case WireCode.UNTRUSTED: return new UntrustedManifestError(message)
    default: return new RemoteInternalError(message)
  }
}

export function wireCodeOf (err: unknown): WireCode {
  const code = (err as { code?: unknown } | null)?.code
  if (typeof code === 'string' && Object.values(WireCode).includes(code as WireCode)) return code as WireCode
  return WireCode.INTERNAL
}
