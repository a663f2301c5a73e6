import type { FunctionSpec, RuntimeKind } from '../protocol/index.js'

/**
 * The seam between the scheduler and the things that run code. A runtime knows nothing of libp2p
 * or of peers: it prepares code, runs it with limits, and reports its own capacity.
 */
/** Code a runtime cannot run: the message says why, for the deployer. */
export class InvalidModuleError extends Error {
  override name = 'InvalidModuleError'
}

export interface RunOptions {
  /** Aborts the call, queued or running; its reason (cancelled, interrupted) is what the call fails with, else a deadline. */
  signal?: AbortSignal
  /** Called once when the call leaves the queue and starts running (for the scheduler's estimate of the wait). */
  onStart?: () => void
  /** When every slot is busy: wait in the bounded queue (true) or throw BusyError at once (false). */
  queue?: boolean
}

export interface RunResult {
  output: Uint8Array
  stderr: string
  /** The code was compiled and loaded (the container started) before this call. */
  warm: boolean
  queueMs: number
  runMs: number
  /** A cold start: ms spent starting what runs the function (part of runMs). */
  initMs?: number
}

export interface RuntimeCapacityInfo {
  slots: number
  busy: number
  queued: number
}

export interface Runtime {
  /** The function runtimes this one runs (a Docker runtime runs several). */
  readonly kinds: readonly RuntimeKind[]
  start(): Promise<void>
  stop(): Promise<void>
  /** Checks and compiles code for a function; throws InvalidModuleError with a message for the deployer. */
  prepare(spec: FunctionSpec, code: Uint8Array): Promise<void>
  /** Ready to run with this spec's code and limits. */
  isPrepared(spec: FunctionSpec): boolean
  /** sha256 of every prepared artifact. */
  prepared(): string[]
  /** This function would run now without a cold start (a compiled module, a started container). */
  isWarm(spec: FunctionSpec): boolean
  /** sha256 of the code that would run now without a cold start, for adverts. */
  warm(): string[]
  /** Drops every compiled variant of this code. */
  release(sha256: string): void
  invoke(spec: FunctionSpec, input: Uint8Array, options?: RunOptions): Promise<RunResult>
  capacity(): RuntimeCapacityInfo
}
