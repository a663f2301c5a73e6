import { Worker } from 'node:worker_threads'
import { logger } from '../log.js'
import { raceSignal } from 'race-signal'
import { abortError, BusyError, FunctionError, FunctionNotFoundError, MAX_IO_BYTES, RuntimeKind } from '../../protocol/index.js'
import { limitMemory, InvalidModuleError, MEMORY_IMPORT, type MemoryLimits } from './limits.js'
import type { FromWorker, ToWorker, WorkerDone } from './messages.js'
import type { Runtime, RunOptions, RunResult, RuntimeCapacityInfo } from '../runtime.js'
import { enqueue, type Waiter } from '../queue.js'
import type { FunctionSpec } from '../../protocol/index.js'

const log = logger('edge:runtimes:wasm')

/**
 * Functions yield the CPU to the agent: each worker thread runs this much nicer than the agent
 * (on Linux; see worker.ts). On a device whose cores all run functions, the agent's own thread
 * otherwise got a fair share with each worker — a third of a core beside two busy ones — and its
 * API, gossip and answers to peers waited behind the functions: in the abuse bench's flood of calls
 * of a CPU-bound function, agent 1's status took up to 0.1–0.2 s.
 */
export const FUNCTION_NICE = 10

export interface WasmRuntimeInit {
  /** Worker threads, each running one call at a time. Default: 2. */
  slots?: number
  /** Calls that may wait for a slot before new ones are refused with BusyError. Default: 64. */
  maxQueue?: number
  /** JS heap of each worker (WASM memory is capped per module, not by this). */
  workerHeapMb?: number
  /** An idle worker beyond the first ends after this long. Default: 60 s. */
  workerIdleMs?: number
}

interface Pending {
  id: number
  resolve: (r: WorkerDone) => void
  reject: (err: Error) => void
}

/**
 * One slot: a call at a time, in a worker thread. The worker (~5.5 MiB of RSS, ~40 ms of CPU to
 * start on x86) starts when the slot is first used, and ends when the slot has idled for a while
 * (the pool keeps one running).
 */
class Slot {
  worker: Worker | undefined
  /** Settles when the worker has loaded (or failed to start): a call's time limit starts after it. */
  ready: Promise<void> = Promise.resolve()
  loaded = new Set<string>()
  pending: Pending | undefined
  /** When the slot last became idle (performance.now()). */
  idleSince = 0
  readonly #heapMb: number
  readonly #onDeath: (slot: Slot, err: Error) => void

  constructor (heapMb: number, onDeath: (slot: Slot, err: Error) => void) {
    this.#heapMb = heapMb
    this.#onDeath = onDeath
  }

  /** Starts the worker if the slot has none. */
  ensure (): void {
    if (this.worker === undefined) this.respawn()
  }

  /** Ends the worker; the slot starts a new one when next used. */
  retire (): void {
    const old = this.worker
    this.worker = undefined
    this.loaded = new Set()
    if (old !== undefined) {
      old.removeAllListeners()
      old.on('error', () => {})
      void old.terminate()
    }
  }

  /** Replaces the worker with a fresh one (after a timeout or a crash); the old one is terminated. */
  respawn (): void {
    this.retire()
    // A fresh worker counts as just idle, not idle since the slot last ran.
    this.idleSince = performance.now()
    const worker = new Worker(new URL('./worker.js', import.meta.url), { resourceLimits: { maxOldGenerationSizeMb: this.#heapMb }, workerData: { nice: FUNCTION_NICE } })
    worker.unref()
    this.ready = new Promise<void>((resolve) => {
      // The worker says when it has loaded and listens; one that cannot start fails its call
      // through #onDeath, and the call need not wait.
      worker.on('message', (msg: FromWorker) => { if (msg.type === 'ready') resolve() })
      worker.once('error', () => { resolve() })
      worker.once('exit', () => { resolve() })
    })
    worker.on('message', (msg: FromWorker) => {
      if (msg.type === 'ready') return
      const p = this.pending
      if (p !== undefined && p.id === msg.id) {
        this.pending = undefined
        p.resolve(msg)
      }
    })
    worker.on('error', (err) => { this.#onDeath(this, err) })
    worker.on('exit', (code) => { this.#onDeath(this, new Error(`worker exited with code ${code}`)) })
    this.worker = worker
  }

  post (msg: ToWorker, transfer: ArrayBuffer[] = []): void {
    this.worker?.postMessage(msg, transfer)
  }
}

/** The same code under different memory limits compiles to different modules. */
function variant (spec: FunctionSpec): string {
  return `${spec.sha256}:${spec.memoryBytes}`
}

interface Compiled {
  spec: FunctionSpec
  module: WebAssembly.Module
  memory: MemoryLimits
}

/**
 * WASI modules on Node's WebAssembly and node:wasi, compiled once and instantiated per call in a
 * pool of worker threads. A call that runs past its time limit terminates its worker, which is
 * replaced; a trap or a crash fails only that call.
 */
export class WasmRuntime implements Runtime {
  readonly kinds = [RuntimeKind.wasm]
  readonly #slots: number
  readonly #maxQueue: number
  readonly #heapMb: number
  readonly #workerIdleMs: number
  #idle: Slot[] = []
  #all = new Set<Slot>()
  #waiters: Array<Waiter<Slot>> = []
  #compiled = new Map<string, Compiled>()
  #nextId = 1
  #started = false
  #sweeper: NodeJS.Timeout | undefined

  constructor (init: WasmRuntimeInit = {}) {
    this.#slots = Math.max(1, init.slots ?? 2)
    this.#maxQueue = init.maxQueue ?? 64
    this.#heapMb = init.workerHeapMb ?? Number(process.env.EDGE_WORKER_HEAP_MB ?? 32)
    this.#workerIdleMs = init.workerIdleMs ?? 60_000
  }

  /**
   * Worker threads running now: one from the start, more as calls need them; idle ones beyond the
   * first end after workerIdleMs. The first is not started lazily: when a deploy reached 50 agents
   * on this 2-core machine at once, each starting its worker for the first call, the calls took
   * 10–14 s instead of 4–5 s; the 5.5 MiB it holds is the price.
   */
  workers (): number {
    let n = 0
    for (const s of this.#all) if (s.worker !== undefined) n++
    return n
  }

  async start (): Promise<void> {
    if (this.#started) return
    this.#started = true
    for (let i = 0; i < this.#slots; i++) this.#addSlot()
    this.#idle.at(-1)?.ensure()
    this.#sweeper = setInterval(() => { this.#retireIdle() }, Math.max(10, this.#workerIdleMs / 2))
    this.#sweeper.unref()
  }

  async stop (): Promise<void> {
    this.#started = false
    clearInterval(this.#sweeper)
    for (const w of this.#waiters.splice(0)) w.reject(new BusyError('runtime stopped'))
    const slots = [...this.#all]
    this.#all.clear()
    this.#idle = []
    await Promise.all(slots.map(async (s) => {
      s.pending?.reject(new FunctionError('runtime stopped'))
      s.pending = undefined
      await s.worker?.terminate()
    }))
  }

  async prepare (spec: FunctionSpec, code: Uint8Array): Promise<void> {
    if (this.#compiled.has(variant(spec))) return
    const limited = limitMemory(code, spec.memoryBytes)
    let module: WebAssembly.Module
    try {
      module = await WebAssembly.compile(limited.code as Uint8Array<ArrayBuffer>)
    } catch (err) {
      throw new InvalidModuleError(`not a valid WebAssembly module: ${(err as Error).message}`, { cause: err })
    }
    const imports = WebAssembly.Module.imports(module)
    const foreign = imports.filter(i => i.module !== 'wasi_snapshot_preview1' && !(i.module === MEMORY_IMPORT.module && i.name === MEMORY_IMPORT.name && i.kind === 'memory'))
    if (foreign.length > 0) {
      const names = foreign.slice(0, 3).map(i => `${i.module}.${i.name}`).join(', ')
      throw new InvalidModuleError(`module imports ${names}${foreign.length > 3 ? ', …' : ''}: only WASI preview1 (wasi_snapshot_preview1) imports are provided`)
    }
    const exports = WebAssembly.Module.exports(module)
    if (!exports.some(e => e.name === '_start' && e.kind === 'function')) {
      throw new InvalidModuleError('module has no _start function: build it as a WASI command (e.g. clang --target=wasm32-wasi)')
    }
    if (!exports.some(e => e.name === 'memory' && e.kind === 'memory')) {
      throw new InvalidModuleError('module does not export its memory, which WASI needs')
    }
    if (limited.capped) log('%s: no declared maximum memory, capped at %d pages', spec.name, limited.memory.maxPages)
    this.#compiled.set(variant(spec), { spec, module, memory: limited.memory })
  }

  isPrepared (spec: FunctionSpec): boolean {
    return this.#compiled.has(variant(spec))
  }

  prepared (): string[] {
    return [...new Set([...this.#compiled.values()].map(c => c.spec.sha256))]
  }

  /** A compiled module instantiates in microseconds: every prepared function is warm. */
  isWarm (spec: FunctionSpec): boolean {
    return this.isPrepared(spec)
  }

  warm (): string[] {
    return this.prepared()
  }

  release (sha256: string): void {
    for (const [key, c] of this.#compiled) {
      if (c.spec.sha256 !== sha256) continue
      this.#compiled.delete(key)
      for (const slot of this.#all) {
        if (slot.loaded.delete(key)) slot.post({ type: 'unload', key })
      }
    }
  }

  capacity (): RuntimeCapacityInfo {
    return { slots: this.#slots, busy: this.#all.size - this.#idle.length, queued: this.#waiters.length }
  }

  async invoke (spec: FunctionSpec, input: Uint8Array, options: RunOptions = {}): Promise<RunResult> {
    const key = variant(spec)
    const compiled = this.#compiled.get(key)
    if (compiled === undefined) throw new FunctionNotFoundError(`function ${spec.name} (${spec.sha256.slice(0, 12)}) is not prepared on this agent`)
    const queuedAt = performance.now()
    const slot = await this.#acquire(options)
    try {
      await raceSignal(slot.ready, options.signal)
    } catch {
      this.#releaseSlot(slot)
      throw abortError(options.signal as AbortSignal, `call to ${spec.name} abandoned while its worker started`)
    }
    // Stopped while the worker started: stop() could not fail this call, which had no worker yet.
    if (!this.#started) {
      this.#releaseSlot(slot)
      throw new BusyError('wasm runtime stopped')
    }
    const startedAt = performance.now()
    options.onStart?.()
    const warm = slot.loaded.has(key)
    try {
      if (!warm) {
        slot.post({ type: 'load', key, module: compiled.module, memory: compiled.memory })
        slot.loaded.add(key)
      }
      const result = await this.#run(slot, key, spec, input, options.signal)
      const runMs = performance.now() - startedAt
      if (!result.ok) {
        throw new FunctionError(`function ${spec.name} failed: ${result.error}`, { stderr: result.stderr })
      }
      if (result.exitCode !== 0) {
        throw new FunctionError(`function ${spec.name} exited with code ${result.exitCode}`, { stderr: result.stderr, exitCode: result.exitCode })
      }
      return { output: result.stdout, stderr: result.stderr, warm, queueMs: startedAt - queuedAt, runMs }
    } finally {
      this.#releaseSlot(slot)
    }
  }

  async #run (slot: Slot, key: string, spec: FunctionSpec, input: Uint8Array, signal?: AbortSignal): Promise<WorkerDone> {
    const id = this.#nextId++
    return await new Promise<WorkerDone>((resolve, reject) => {
      const kill = (err: Error): void => {
        if (slot.pending?.id !== id) return
        slot.pending = undefined
        slot.respawn()
        reject(err)
      }
      const timer = setTimeout(() => {
        kill(new FunctionError(`function ${spec.name} timed out after ${spec.timeoutMs} ms and was stopped`))
      }, spec.timeoutMs)
      const onAbort = (): void => { kill(abortError(signal as AbortSignal, `call to ${spec.name} abandoned: deadline exceeded`)) }
      signal?.addEventListener('abort', onAbort, { once: true })
      const done = (): void => {
        clearTimeout(timer)
        signal?.removeEventListener('abort', onAbort)
      }
      slot.pending = {
        id,
        resolve: (r) => { done(); resolve(r) },
        reject: (e) => { done(); reject(e) }
      }
      if (signal?.aborted === true) { onAbort(); return }
      // A copy of exactly the input, transferred: posting a view of a pooled Buffer would clone the whole pool.
      const data = new Uint8Array(input)
      slot.post({ type: 'run', id, key, name: spec.name, input: data, env: {}, maxOutputBytes: MAX_IO_BYTES }, [data.buffer])
    })
  }

  async #acquire (options: RunOptions): Promise<Slot> {
    if (!this.#started) throw new BusyError('wasm runtime is not running')
    // The most recently used slot first: its worker is running, and the others may idle out.
    let slot = this.#idle.pop()
    if (slot === undefined) {
      if (options.queue === false) throw new BusyError('all wasm slots are busy')
      if (this.#waiters.length >= this.#maxQueue) throw new BusyError(`all wasm slots are busy and ${this.#maxQueue} calls are queued`)
      slot = await enqueue<Slot, Waiter<Slot>>(this.#waiters, {}, options.signal, 'a free slot')
    }
    slot.ensure()
    return slot
  }

  #releaseSlot (slot: Slot): void {
    if (!this.#all.has(slot)) return
    const waiter = this.#waiters.shift()
    if (waiter !== undefined) {
      waiter.resolve(slot)
      return
    }
    slot.idleSince = performance.now()
    this.#idle.push(slot)
  }

  /** Ends the workers of slots idle for longer than workerIdleMs, least recently used first, keeping one running. */
  #retireIdle (): void {
    const cutoff = performance.now() - this.#workerIdleMs
    // #idle is in release order: the front idled longest.
    for (const slot of this.#idle) {
      if (this.workers() <= 1) return
      if (slot.idleSince > cutoff) return
      if (slot.worker === undefined) continue
      slot.retire()
      log('an idle wasm worker ended (%d running)', this.workers())
    }
  }

  #addSlot (): Slot {
    const slot = new Slot(this.#heapMb, (s, err) => { this.#onWorkerExit(s, err) })
    this.#all.add(slot)
    this.#idle.push(slot)
    return slot
  }

  #onWorkerExit (slot: Slot, err: Error): void {
    if (!this.#started || !this.#all.has(slot)) return
    log.error('wasm worker died: %s', err.message)
    const pending = slot.pending
    if (pending !== undefined) {
      slot.pending = undefined
      pending.reject(new FunctionError(`function crashed its worker: ${err.message}`, { cause: err }))
    }
    slot.respawn()
  }
}
