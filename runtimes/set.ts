import type { FunctionSpec, RuntimeKind } from '../protocol/index.js'
import { InvalidModuleError, type Runtime, type RunOptions, type RunResult, type RuntimeCapacityInfo } from './runtime.js'

const NONE: RuntimeCapacityInfo = { slots: 0, busy: 0, queued: 0 }

/**
 * The runtimes of one agent (WASM always; Docker where there is one), each function sent to the
 * one that runs its kind.
 */
export class RuntimeSet {
  readonly #runtimes: Runtime[]

  constructor (runtimes: Runtime[]) {
    this.#runtimes = runtimes
  }

  /** The runtime of a kind, or undefined when this agent cannot run it. */
  for (kind: RuntimeKind): Runtime | undefined {
    return this.#runtimes.find(r => r.kinds.includes(kind))
  }

  #get (kind: RuntimeKind): Runtime {
    const runtime = this.for(kind)
    if (runtime === undefined) throw new InvalidModuleError(`this agent cannot run ${kind} functions (it runs ${this.kinds().join(', ')})`)
    return runtime
  }

  kinds (): RuntimeKind[] {
    return this.#runtimes.flatMap(r => r.kinds)
  }

  all (): readonly Runtime[] {
    return this.#runtimes
  }

  async start (): Promise<void> {
    for (const r of this.#runtimes) await r.start()
  }

  async stop (): Promise<void> {
    await Promise.all(this.#runtimes.map(async r => { await r.stop() }))
  }

  async prepare (spec: FunctionSpec, code: Uint8Array): Promise<void> {
    await this.#get(spec.runtime).prepare(spec, code)
  }

  isPrepared (spec: FunctionSpec): boolean {
    return this.for(spec.runtime)?.isPrepared(spec) ?? false
  }

  prepared (): string[] {
    return [...new Set(this.#runtimes.flatMap(r => r.prepared()))]
  }

  isWarm (spec: FunctionSpec): boolean {
    return this.for(spec.runtime)?.isWarm(spec) ?? false
  }

  warm (): string[] {
    return [...new Set(this.#runtimes.flatMap(r => r.warm()))]
  }

  release (sha256: string): void {
    for (const r of this.#runtimes) r.release(sha256)
  }

  async invoke (spec: FunctionSpec, input: Uint8Array, options?: RunOptions): Promise<RunResult> {
    return await this.#get(spec.runtime).invoke(spec, input, options)
  }

  /** Slots of the runtime that runs `kind` (none when this agent cannot). */
  capacity (kind: RuntimeKind): RuntimeCapacityInfo {
    return this.for(kind)?.capacity() ?? NONE
  }

  /** Every kind this agent runs, with the capacity of the runtime behind it (kinds of one runtime share it). */
  capacities (): Array<RuntimeCapacityInfo & { kind: RuntimeKind }> {
    return this.#runtimes.flatMap(r => {
      const cap = r.capacity()
      return r.kinds.map(kind => ({ kind, ...cap }))
    })
  }
}
