import { abortError, BusyError, RuntimeKind, type FunctionSpec } from '../protocol/index.js'
import type { Runtime, RunOptions, RunResult, RuntimeCapacityInfo } from './runtime.js'
import { enqueue, type Waiter } from './queue.js'

/** Waits `ms`, or fails as the signal says when it aborts first. */
async function sleep (ms: number, signal?: AbortSignal): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    const onAbort = (): void => { clearTimeout(timer); reject(abortError(signal as AbortSignal, 'noop call abandoned: deadline exceeded')) }
    const timer = setTimeout(() => { signal?.removeEventListener('abort', onAbort); resolve() }, ms)
    if (signal?.aborted === true) onAbort()
    else signal?.addEventListener('abort', onAbort, { once: true })
  })
}

/**
 * A runtime that runs nothing: it answers with the input, holding a slot for `delayMs`; calls that
 * may wait queue for a slot. For tests of the scheduler only, where the real runtimes are tested on
 * their own.
 */
export class NoopRuntime implements Runtime {
  readonly kinds = [RuntimeKind.wasm]
  readonly #slots: number
  readonly #delayMs: number
  readonly #prepared = new Set<string>()
  #busy = 0
  readonly #waiters: Array<Waiter<undefined>> = []
  calls = 0

  constructor (init: { slots?: number, delayMs?: number } = {}) {
    this.#slots = init.slots ?? 1
    this.#delayMs = init.delayMs ?? 0
  }

  async start (): Promise<void> {}
  async stop (): Promise<void> {}
  async prepare (spec: FunctionSpec): Promise<void> { this.#prepared.add(spec.sha256) }
  isPrepared (spec: FunctionSpec): boolean { return this.#prepared.has(spec.sha256) }
  prepared (): string[] { return [...this.#prepared] }
  isWarm (spec: FunctionSpec): boolean { return this.isPrepared(spec) }
  warm (): string[] { return this.prepared() }
  release (sha256: string): void { this.#prepared.delete(sha256) }
  capacity (): RuntimeCapacityInfo { return { slots: this.#slots, busy: this.#busy, queued: this.#waiters.length } }

  /** Occupies every slot until the returned function is called. */
  saturate (): () => void {
    const taken = this.#slots - this.#busy
    this.#busy += taken
    return () => {
      for (let i = 0; i < taken; i++) {
        const next = this.#waiters.shift()
        if (next !== undefined) next.resolve(undefined)
        else this.#busy--
      }
    }
  }

  async invoke (_spec: FunctionSpec, input: Uint8Array, options: RunOptions = {}): Promise<RunResult> {
    const queuedAt = performance.now()
    if (this.#busy >= this.#slots) {
      if (options.queue !== true) throw new BusyError('all noop slots are busy')
      // The slot is handed over by the call that frees it.
      await enqueue<undefined, Waiter<undefined>>(this.#waiters, {}, options.signal, 'a noop slot')
    } else {
      this.#busy++
    }
    this.calls++
    options.onStart?.()
    const startedAt = performance.now()
    try {
      if (this.#delayMs > 0) await sleep(this.#delayMs, options.signal)
      return { output: input, stderr: '', warm: true, queueMs: startedAt - queuedAt, runMs: performance.now() - startedAt }
    } finally {
      const next = this.#waiters.shift()
      if (next !== undefined) next.resolve(undefined)
      else this.#busy--
    }
  }
}
