/** Messages between the pool and its worker threads (in-process, not on the wire). */
export type ToWorker =
  | { type: 'load', key: string, module: WebAssembly.Module, memory: { minPages: number, maxPages: number } }
  | { type: 'unload', key: string }
  | { type: 'run', id: number, key: string, name: string, input: Uint8Array, env: Record<string, string>, maxOutputBytes: number }

/** A call's outcome, from the worker. */
export type WorkerDone =
  | { type: 'done', id: number, ok: true, exitCode: number, stdout: Uint8Array, stderr: string }
  | { type: 'done', id: number, ok: false, error: string, stdout: Uint8Array, stderr: string }

/** `ready` once, when the worker has loaded and listens; then one `done` per run. */
export type FromWorker = { type: 'ready' } | WorkerDone
