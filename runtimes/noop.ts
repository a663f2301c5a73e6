import { BusyError, RuntimeKind, type FunctionSpec } from '../protocol/index.js'
import type { Runtime, RunOptions, RunResult, RuntimeCapacityInfo } from './runtime.js'

/**
 * A runtime that runs nothing: it answers with the input, holding a slot for `delayMs`. For tests of
 * the scheduler only, where the real runtimes are tested on their own.
 */
export class NoopRuntime implements Runtime {
  readonly kinds = [RuntimeKind.wasm]
  readonly #slots: number
  readonly #delayMs: number
  readonly #prepared = new Set<string>()
  #busy = 0
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
  capacity (): RuntimeCapacityInfo { return { slots: this.#slots, busy: this.#busy, queued: 0 } }

  /** Occupies every slot until the returned function is called. */
  saturate (): () => void {
    const taken = this.#slots - this.#busy
    this.#busy += taken
    return () => { this.#busy -= taken }
  }

  async invoke (_spec: FunctionSpec, input: Uint8Array, _options: RunOptions = {}): Promise<RunResult> {
    if (this.#busy >= this.#slots) throw new BusyError('all noop slots are busy')
    this.#busy++
    this.calls++
    try {
      if (this.#delayMs > 0) await new Promise(resolve => setTimeout(resolve, this.#delayMs))
      return { output: input, stderr: '', warm: true, queueMs: 0, runMs: this.#delayMs }
    } finally {
      this.#busy--
    }
  }
}
