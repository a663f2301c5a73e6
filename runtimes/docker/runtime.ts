import { randomBytes } from 'node:crypto'
import { chmodSync, existsSync, lstatSync, mkdirSync, readdirSync, renameSync, rmSync } from 'node:fs'
import { availableParallelism } from 'node:os'
import { join } from 'node:path'
import { Writable, type Duplex } from 'node:stream'
import { logger } from '../log.js'
import type Docker from 'dockerode'
import { extract } from 'tar'
import {
  abortError, BusyError, CONTAINER_RUNTIMES, FunctionError, FunctionNotFoundError, listArtifact, MAX_IO_BYTES, RuntimeKind, type FunctionSpec
} from '../../protocol/index.js'
import { enqueue, type Waiter } from '../queue.js'
import { InvalidModuleError, type Runtime, type RunOptions, type RunResult, type RuntimeCapacityInfo } from '../runtime.js'
import { ensureImage, imageProblem, RUN_AS, type ImageKind, type RuntimeImage } from './images.js'
import { BINARY_RUNNER, NODE_RUNNER, PYTHON_RUNNER, RUNNER_DIR } from './runners.js'

const log = logger('edge:runtimes:docker')

/** Removes every container (running or not) labelled as owned by the agent `owner` (its peer id); returns how many. */
export async function reapContainers (docker: Docker, owner: string): Promise<number> {
  const found = await docker.listContainers({ all: true, filters: { label: [`${OWNER_LABEL}=${owner}`] } })
  await Promise.all(found.map(async (c) => {
    await docker.getContainer(c.Id).remove({ force: true }).catch((err: Error) => { log.error('cannot remove %s: %s', c.Id.slice(0, 12), err.message) })
  }))
  return found.length
}

/** The label that names the agent owning a container. */
export const OWNER_LABEL = 'edge.agent'
/** Time a container may take from create to its runner's `ready`. */
const INIT_TIMEOUT_MS = 30_000
/** A response line longer than this (base64 of the largest output, and its log) kills the container. */
const MAX_LINE_BYTES = Math.ceil(MAX_IO_BYTES * 4 / 3) + 256 * 1024
const STDERR_TAIL = 4096
const MiB = 1024 * 1024
/** Docker refuses less. */
const MIN_MEMORY_BYTES = 6 * MiB

interface Flavour {
  image: ImageKind
  cmd: string[]
  runner: Record<string, string>
  /** The runner serves one call at a time. */
  serial: boolean
}

const FLAVOURS: Partial<Record<RuntimeKind, Flavour>> = {
  [RuntimeKind.node]: { image: 'node', cmd: ['node', `${RUNNER_DIR}/runner.mjs`], runner: { [`${RUNNER_DIR}/runner.mjs`]: NODE_RUNNER }, serial: false },
  [RuntimeKind.python]: { image: 'python3', cmd: ['python3', '-u', `${RUNNER_DIR}/runner.py`], runner: { [`${RUNNER_DIR}/runner.py`]: PYTHON_RUNNER }, serial: true },
  [RuntimeKind.binary]: { image: 'binary', cmd: ['/bin/sh', `${RUNNER_DIR}/runner.sh`], runner: { [`${RUNNER_DIR}/runner.sh`]: BINARY_RUNNER }, serial: true }
}

/**
 * The runtime image of `image` kind with its runner baked in: built if missing or out of date.
 * What the agent runs, and what `edge-agent runtimes build` builds ahead.
 */
export async function buildRuntimeImage (docker: Docker, image: ImageKind): Promise<RuntimeImage> {
  const flavour = Object.values(FLAVOURS).find(f => f.image === image)
  return await ensureImage(docker, image, flavour?.runner ?? {})
}

export interface DockerRuntimeInit {
  docker: Docker
  /** Names this agent on every container it makes (its peer id), so that it can reap its leftovers. */
  owner: string
  /** Where functions' code is unpacked (bound read-only into their containers). */
  dir: string
  /** Calls running at once, and containers kept, across all functions. Default: the CPU count, at least 2. */
  slots?: number
  /** Calls that may wait for a container before new ones are refused with BusyError. Default: 64. */
  maxQueue?: number
  /** Idle ms before a warm container is removed, for functions that do not say. Default: 60 s. */
  keepaliveMs?: number
  /** Docker network for functions whose manifest asks for one. Default: `bridge`. */
  network?: string
  /** Size of each container's writable /tmp. Default: 16 MiB. */
  tmpfsBytes?: number
}

export interface ContainerPlan {
  spec: FunctionSpec
  image: string
  /** The function's unpacked code on the host, bound read-only at /fn. */
  dir: string
  owner: string
  /** For functions whose manifest asks for network access. Default: `bridge`. */
  network?: string
  tmpfsBytes?: number
  /** Limits this host cannot enforce, left out. */
  unsupported?: ReadonlySet<'NanoCpus' | 'PidsLimit'>
}

/**
 * How a container of a function is created: its runner, environment and labels, and the
 * hardening every function gets (no network unless asked, read-only root with a small /tmp, no
 * capabilities, no-new-privileges, an unprivileged user, memory without swap, CPU and pids limits).
 */
export function containerOptions (plan: ContainerPlan): Docker.ContainerCreateOptions {
  const { spec } = plan
  const flavour = FLAVOURS[spec.runtime]
  if (flavour === undefined) throw new InvalidModuleError(`runtime ${spec.runtime} does not run in containers`)
  const c = spec.container ?? {}
  const memory = Math.max(MIN_MEMORY_BYTES, spec.memoryBytes)
  const hostConfig: Docker.HostConfig = {
    NetworkMode: c.network === true ? (plan.network ?? 'bridge') : 'none',
    Memory: memory,
    MemorySwap: memory,
    ReadonlyRootfs: true,
    Tmpfs: { '/tmp': `rw,noexec,nosuid,nodev,size=${plan.tmpfsBytes ?? 16 * MiB}` },
    CapDrop: ['ALL'],
    SecurityOpt: ['no-new-privileges'],
    Binds: [`${plan.dir}:/fn:ro`],
    // Output travels over the attach stream: no log files growing on the device's disk.
    LogConfig: { Type: 'none', Config: {} }
  }
  if (plan.unsupported?.has('NanoCpus') !== true) hostConfig.NanoCpus = Math.round((c.cpus ?? 1) * 1e9)
  if (plan.unsupported?.has('PidsLimit') !== true) hostConfig.PidsLimit = c.pids ?? 64
  return {
    name: `edge-${spec.name}-v${spec.version}-${randomBytes(4).toString('hex')}`,
    Image: plan.image,
    Cmd: flavour.cmd,
    Env: [
      ...Object.entries(spec.env ?? {}).map(([k, v]) => `${k}=${v}`),
      `EDGE_ENTRY=${spec.entry ?? ''}`, `EDGE_FUNCTION=${spec.name}`, `EDGE_VERSION=${spec.version}`
    ],
    Labels: { [OWNER_LABEL]: plan.owner, 'edge.function': spec.name, 'edge.version': String(spec.version), 'edge.sha256': spec.sha256 },
    User: RUN_AS,
    WorkingDir: '/tmp',
    AttachStdin: true,
    AttachStdout: true,
    AttachStderr: true,
    OpenStdin: true,
    // Its stdin closes when the agent's attach stream does (the agent stopped, or was killed): the
    // runner reads EOF and exits, so no container outlives its agent.
    StdinOnce: true,
    Tty: false,
    StopTimeout: 1,
    HostConfig: hostConfig
  }
}

interface Reply {
  id?: number
  ready?: boolean
  ok?: boolean
  out?: string
  log?: string
  error?: string
  code?: number
}

interface Call {
  resolve: (r: Reply) => void
  reject: (e: Error) => void
}

/** The variant of a function a pool runs: the same code with other limits is another pool. */
function variant (spec: FunctionSpec): string {
  return `${spec.sha256}:${spec.runtime}:${spec.entry ?? ''}:${spec.memoryBytes}:${JSON.stringify(spec.container ?? {})}:${JSON.stringify(spec.env ?? {})}`
}

function mib (n: number): string {
  return `${Math.round(n / MiB)} MiB`
}

/** One function's warm containers. */
class Pool {
  readonly boxes = new Set<Box>()
  readonly perBox: number
  readonly max: number
  readonly keepaliveMs: number
  readonly singleUse: boolean

  constructor (readonly spec: FunctionSpec, readonly flavour: Flavour, readonly dir: string, slots: number, defaultKeepaliveMs: number) {
    const c = spec.container ?? {}
    this.perBox = flavour.serial ? 1 : Math.max(1, c.concurrency ?? 1)
    this.max = Math.min(slots, c.maxContainers ?? slots)
    this.keepaliveMs = c.keepaliveMs ?? defaultKeepaliveMs
    this.singleUse = c.singleUse === true
  }
}

/** One container and the runner inside it. */
class Box {
  container: Docker.Container | undefined
  stream: Duplex | undefined
  state: 'starting' | 'ready' | 'closing' = 'starting'
  /** Calls assigned to this container: sent, or waiting for it to be ready. */
  load = 0
  /** A single-use container that has had its call. */
  spent = false
  /** Its process is gone (the attach stream ended): no call is placed on it while the agent finds out why. */
  exited = false
  lastUsed = 0
  initMs = 0
  idleTimer: NodeJS.Timeout | undefined
  readonly calls = new Map<number, Call>()
  /** Why it was stopped on purpose: what its in-flight calls are told. */
  stopReason: string | undefined
  stderrTail = ''
  readonly ready: Promise<void>
  onReady!: () => void
  onFail!: (err: Error) => void
  #line: Buffer[] = []
  #lineBytes = 0

  /** Taken out of service (a getter, so that checks after an await are not narrowed away). */
  get closed (): boolean {
    return this.state === 'closing'
  }

  constructor (readonly pool: Pool) {
    this.ready = new Promise<void>((resolve, reject) => { this.onReady = resolve; this.onFail = reject })
    this.ready.catch(() => {})
  }

  /** Splits the runner's stdout into lines; each is one reply. */
  data (chunk: Buffer, onLine: (line: string) => void, onOverflow: () => void): void {
    let start = 0
    for (let nl = chunk.indexOf(10); nl !== -1; nl = chunk.indexOf(10, start)) {
      const piece = chunk.subarray(start, nl)
      const line = this.#line.length === 0 ? piece.toString('utf8') : Buffer.concat([...this.#line, piece]).toString('utf8')
      this.#line = []
      this.#lineBytes = 0
      start = nl + 1
      onLine(line)
    }
    if (start < chunk.length) {
      this.#line.push(chunk.subarray(start))
      this.#lineBytes += chunk.length - start
      if (this.#lineBytes > MAX_LINE_BYTES) onOverflow()
    }
  }
}

interface PoolWaiter extends Waiter<Box> {
  pool: Pool
}

/**
 * Node, python and binary functions in Docker containers from images the agent builds itself.
 * Each function has a pool of warm containers: a call goes to one with room, else to a new one
 * (a cold start), else waits; idle containers expire after their keepalive. A container runs a
 * small loop (runners.ts) that takes one request per line on stdin, so warm calls cost a pipe
 * round trip, not a `docker exec`. Containers are hardened (no network, read-only root, no
 * capabilities, an unprivileged user, memory, CPU and process limits) and labelled with their
 * agent, which removes them when it stops and reaps what a killed run of it left behind.
 */
export class DockerRuntime implements Runtime {
  readonly kinds: RuntimeKind[] = []
  readonly #init: DockerRuntimeInit
  readonly #docker: Docker
  readonly #slots: number
  readonly #maxQueue: number
  readonly #keepaliveMs: number
  readonly #tmpfsBytes: number
  readonly #pools = new Map<string, Pool>()
  readonly #images = new Map<ImageKind, Promise<string>>()
  readonly #removing = new Set<Promise<void>>()
  #waiters: PoolWaiter[] = []
  #containers = 0
  #nextId = 1
  #started = false
  /** Host features found missing, so not asked for again: CPU (CFS) or pids limits. */
  #unsupported = new Set<'NanoCpus' | 'PidsLimit'>()

  constructor (init: DockerRuntimeInit) {
    this.#init = init
    this.#docker = init.docker
    this.#slots = Math.max(1, init.slots ?? Math.max(2, availableParallelism()))
    this.#maxQueue = init.maxQueue ?? 64
    this.#keepaliveMs = init.keepaliveMs ?? 60_000
    this.#tmpfsBytes = init.tmpfsBytes ?? 16 * MiB
  }

  /** Finds which runtimes this host can build images for, and removes containers a previous run of this agent left. */
  async start (): Promise<void> {
    if (this.#started) return
    this.kinds.length = 0
    for (const kind of CONTAINER_RUNTIMES) {
      const flavour = FLAVOURS[kind]
      if (flavour === undefined) continue
      const problem = await imageProblem(flavour.image)
      if (problem === undefined) this.kinds.push(kind)
      else log('no %s functions here: %s', kind, problem)
    }
    mkdirSync(this.#init.dir, { recursive: true })
    const reaped = await this.reap()
    if (reaped > 0) log('removed %d containers left by a previous run', reaped)
    this.#started = true
  }

  /** Removes every container labelled as this agent's; returns how many. */
  async reap (): Promise<number> {
    return await reapContainers(this.#docker, this.#init.owner)
  }

  async stop (): Promise<void> {
    this.#started = false
    for (const w of this.#waiters.splice(0)) w.reject(new BusyError('docker runtime stopped'))
    for (const pool of this.#pools.values()) {
      for (const box of pool.boxes) this.#destroy(box, 'the agent is stopping')
    }
    await Promise.all([...this.#removing])
  }

  /** The image for a runtime, built (once) when first needed. */
  async image (kind: RuntimeKind): Promise<string> {
    const flavour = FLAVOURS[kind]
    if (flavour === undefined) throw new InvalidModuleError(`runtime ${kind} does not run in containers`)
    let p = this.#images.get(flavour.image)
    if (p === undefined) {
      p = buildRuntimeImage(this.#docker, flavour.image).then((img) => {
        if (img.built) log('built image %s in %d ms', img.tag, Math.round(img.ms))
        return img.tag
      })
      p.catch(() => { this.#images.delete(flavour.image) })
      this.#images.set(flavour.image, p)
    }
    return await p
  }

  /** Unpacks the function's artifact (once per code) and checks its entry; builds the image if needed. */
  async prepare (spec: FunctionSpec, code: Uint8Array): Promise<void> {
    const key = variant(spec)
    if (this.#pools.has(key)) return
    const flavour = FLAVOURS[spec.runtime]
    if (flavour === undefined || !this.kinds.includes(spec.runtime)) throw new InvalidModuleError(`this agent cannot run ${spec.runtime} functions`)
    if (spec.entry === undefined) throw new InvalidModuleError(`function ${spec.name} names no entry file`)
    const dir = join(this.#init.dir, spec.sha256)
    if (!existsSync(dir)) await this.#unpack(code, dir)
    const entry = lstatSync(join(dir, spec.entry), { throwIfNoEntry: false })
    if (entry === undefined) throw new InvalidModuleError(`function ${spec.name} has no file ${spec.entry}`)
    await this.image(spec.runtime)
    if (!this.#pools.has(key)) this.#pools.set(key, new Pool(spec, flavour, dir, this.#slots, this.#keepaliveMs))
  }

  async #unpack (code: Uint8Array, dir: string): Promise<void> {
    try {
      await listArtifact(code)
    } catch (err) {
      throw new InvalidModuleError((err as Error).message)
    }
    const tmp = `${dir}.${randomBytes(4).toString('hex')}.tmp`
    mkdirSync(tmp, { recursive: true })
    try {
      await new Promise<void>((resolve, reject) => {
        const x = extract({ cwd: tmp, strict: true, preservePaths: false, noMtime: true, preserveOwner: false })
        x.on('error', reject)
        x.on('close', () => { resolve() })
        x.end(Buffer.from(code.buffer, code.byteOffset, code.byteLength))
      })
      readable(tmp)
      renameSync(tmp, dir)
    } catch (err) {
      rmSync(tmp, { recursive: true, force: true })
      if (existsSync(dir)) return
      throw new InvalidModuleError(`cannot unpack the function: ${(err as Error).message}`)
    }
  }

  isPrepared (spec: FunctionSpec): boolean {
    return this.#pools.has(variant(spec))
  }

  prepared (): string[] {
    return [...new Set([...this.#pools.values()].map(p => p.spec.sha256))]
  }

  /** A started container (busy or idle): the function's next call need not wait for a cold start. */
  isWarm (spec: FunctionSpec): boolean {
    const pool = this.#pools.get(variant(spec))
    return pool !== undefined && hasLive(pool)
  }

  warm (): string[] {
    return [...new Set([...this.#pools.values()].filter(hasLive).map(p => p.spec.sha256))]
  }

  /** Stops the code's containers and removes its unpacked files. */
  release (sha256: string): void {
    for (const [key, pool] of this.#pools) {
      if (pool.spec.sha256 !== sha256) continue
      this.#pools.delete(key)
      for (const box of pool.boxes) this.#destroy(box, `function ${pool.spec.name} was removed from this agent`)
      for (const w of this.#waiters.filter(w => w.pool === pool)) {
        this.#waiters.splice(this.#waiters.indexOf(w), 1)
        w.reject(new FunctionNotFoundError(`function ${pool.spec.name} was removed from this agent`))
      }
    }
    rmSync(join(this.#init.dir, sha256), { recursive: true, force: true })
  }

  capacity (): RuntimeCapacityInfo {
    return { slots: this.#slots, busy: Math.min(this.#busy(), this.#slots), queued: this.#waiters.length }
  }

  /** Containers of each function, and of all: for `edge status` and tests. */
  containers (): { total: number, functions: Array<{ name: string, version: number, containers: number, busy: number }> } {
    const functions = [...this.#pools.values()].filter(p => p.boxes.size > 0).map(p => ({
      name: p.spec.name, version: p.spec.version, containers: p.boxes.size, busy: [...p.boxes].reduce((n, b) => n + b.load, 0)
    }))
    return { total: this.#containers, functions }
  }

  /**
   * Starts containers of a prepared function until it has `count` (within its and the agent's
   * limits); resolves when they are ready. Returns how many it started and how many it has.
   */
  async prewarm (spec: FunctionSpec, count: number): Promise<{ started: number, warm: number }> {
    const pool = this.#pools.get(variant(spec))
    if (pool === undefined) throw new FunctionNotFoundError(`function ${spec.name} (${spec.sha256.slice(0, 12)}) is not prepared on this agent`)
    if (pool.singleUse) throw new InvalidModuleError(`function ${spec.name} is single-use: each call gets a fresh container, so none is kept warm`)
    const started: Box[] = []
    while (pool.boxes.size < Math.min(count, pool.max) && this.#room(pool)) started.push(this.#startBox(pool))
    await Promise.all(started.map(async b => { await b.ready }))
    return { started: started.length, warm: [...pool.boxes].filter(b => b.state === 'ready').length }
  }

  async invoke (spec: FunctionSpec, input: Uint8Array, options: RunOptions = {}): Promise<RunResult> {
    const pool = this.#pools.get(variant(spec))
    if (pool === undefined) throw new FunctionNotFoundError(`function ${spec.name} (${spec.sha256.slice(0, 12)}) is not prepared on this agent`)
    if (!this.#started) throw new BusyError('docker runtime is not running')
    const queuedAt = performance.now()
    const box = await this.#assign(pool, options)
    const startedAt = performance.now()
    options.onStart?.()
    const cold = box.state === 'starting'
    try {
      if (cold) await raceAbort(box.ready, options.signal, () => { this.#destroy(box, `call to ${spec.name} abandoned: deadline exceeded`) })
      const reply = await this.#call(box, spec, input, options.signal)
      const runMs = performance.now() - startedAt
      const stderr = reply.log === undefined ? '' : Buffer.from(reply.log, 'base64').toString('utf8')
      if (reply.ok !== true) throw new FunctionError(`function ${spec.name} failed: ${reply.error ?? 'no reason given'}`, { stderr })
      const output = Buffer.from(reply.out ?? '', 'base64')
      if (output.byteLength > MAX_IO_BYTES) throw new FunctionError(`function ${spec.name} returned ${output.byteLength} bytes, more than ${MAX_IO_BYTES}`)
      if (reply.code !== undefined && reply.code !== 0) {
        throw new FunctionError(`function ${spec.name} exited with code ${reply.code}`, { stderr, exitCode: reply.code })
      }
      return { output, stderr, warm: !cold, queueMs: startedAt - queuedAt, runMs, ...(cold ? { initMs: box.initMs } : {}) }
    } finally {
      this.#done(box)
    }
  }

  /** A container of the pool for this call: one with room, a new one, or the first to free up. */
  async #assign (pool: Pool, options: RunOptions): Promise<Box> {
    if (this.#waiters.length === 0) {
      const box = this.#place(pool)
      if (box !== undefined) return box
    }
    if (options.queue === false) throw new BusyError(`no container of ${pool.spec.name} is free`)
    if (this.#waiters.length >= this.#maxQueue) throw new BusyError(`every container is busy and ${this.#maxQueue} calls are queued`)
    const waiting = enqueue<Box, PoolWaiter>(this.#waiters, { pool }, options.signal, 'a container')
    this.#pump()
    return await waiting
  }

  #busy (): number {
    let busy = 0
    for (const pool of this.#pools.values()) for (const box of pool.boxes) busy += box.load
    return busy
  }

  /** Room for one more container of `pool`, after removing the longest-idle one of another function if need be. */
  #room (pool: Pool): boolean {
    if (this.#containers < this.#slots) return true
    let idlest: Box | undefined
    for (const other of this.#pools.values()) {
      if (other === pool) continue
      for (const box of other.boxes) {
        if (box.state === 'ready' && box.load === 0 && (idlest === undefined || box.lastUsed < idlest.lastUsed)) idlest = box
      }
    }
    if (idlest === undefined) return false
    this.#destroy(idlest, 'making room for another function')
    return this.#containers < this.#slots
  }

  /** Assigns a call to a container now, or returns undefined when it must wait. */
  #place (pool: Pool): Box | undefined {
    if (this.#busy() >= this.#slots) return undefined
    let best: Box | undefined
    for (const box of pool.boxes) {
      if (box.state === 'closing' || box.spent || box.exited || box.load >= pool.perBox) continue
      // A ready container before a starting one; then the least loaded; then the most recently used.
      if (best === undefined || rank(box) < rank(best)) best = box
    }
    if (best === undefined && pool.boxes.size < pool.max && this.#room(pool)) best = this.#startBox(pool)
    if (best === undefined) return undefined
    best.load++
    if (pool.singleUse) best.spent = true
    if (best.idleTimer !== undefined) { clearTimeout(best.idleTimer); best.idleTimer = undefined }
    return best
  }

  /** Gives waiting calls the containers that freed up. */
  #pump (): void {
    for (let i = 0; i < this.#waiters.length;) {
      const w = this.#waiters[i] as PoolWaiter
      const box = this.#place(w.pool)
      if (box === undefined) { i++; continue }
      this.#waiters.splice(i, 1)
      w.resolve(box)
    }
  }

  #done (box: Box): void {
    box.load--
    box.lastUsed = performance.now()
    if (box.pool.singleUse) this.#destroy(box, 'single-use')
    else if (box.load === 0 && box.state === 'ready') this.#idle(box)
    this.#pump()
  }

  #idle (box: Box): void {
    if (box.idleTimer !== undefined) clearTimeout(box.idleTimer)
    box.idleTimer = setTimeout(() => {
      box.idleTimer = undefined
      if (box.load === 0 && box.state === 'ready') this.#destroy(box, 'idle past its keepalive')
    }, box.pool.keepaliveMs)
    box.idleTimer.unref()
  }

  /** Sends one request to a ready container; kills it if the call runs past the function's time limit. */
  async #call (box: Box, spec: FunctionSpec, input: Uint8Array, signal?: AbortSignal): Promise<Reply> {
    const id = this.#nextId++
    return await new Promise<Reply>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#destroy(box, `function ${spec.name} timed out after ${spec.timeoutMs} ms and was stopped`)
      }, spec.timeoutMs)
      const onAbort = (): void => {
        // This call fails as its signal says (cancelled, interrupted, deadline); the container it
        // was running in cannot be trusted to stop, so it goes.
        box.calls.get(id)?.reject(abortError(signal as AbortSignal, `call to ${spec.name} abandoned: deadline exceeded`))
        this.#destroy(box, `call to ${spec.name} abandoned`)
      }
      const settle = (): void => {
        clearTimeout(timer)
        signal?.removeEventListener('abort', onAbort)
        box.calls.delete(id)
      }
      box.calls.set(id, { resolve: (r) => { settle(); resolve(r) }, reject: (e) => { settle(); reject(e) } })
      if (box.state !== 'ready' || box.stream === undefined) {
        box.calls.get(id)?.reject(new FunctionError(box.stopReason ?? `the container of ${spec.name} is gone`))
        return
      }
      signal?.addEventListener('abort', onAbort, { once: true })
      const data = Buffer.from(input.buffer, input.byteOffset, input.byteLength).toString('base64')
      box.stream.write(`{"id":${id},"ms":${spec.timeoutMs},"in":"${data}"}\n`)
    })
  }

  #startBox (pool: Pool): Box {
    const box = new Box(pool)
    pool.boxes.add(box)
    this.#containers++
    const started = performance.now()
    const init = setTimeout(() => { this.#destroy(box, `function ${pool.spec.name} did not start within ${INIT_TIMEOUT_MS / 1000} s`) }, INIT_TIMEOUT_MS)
    init.unref()
    this.#launch(box).then(
      () => {
        clearTimeout(init)
        box.initMs = performance.now() - started
        if (box.state !== 'starting') return
        box.state = 'ready'
        box.lastUsed = performance.now()
        box.onReady()
        if (box.load === 0) this.#idle(box)
      },
      (err: Error) => {
        clearTimeout(init)
        box.onFail(err instanceof FunctionError ? err : new FunctionError(`function ${pool.spec.name} could not start: ${err.message}`, { cause: err }))
        this.#destroy(box, err.message)
      })
    return box
  }

  /** Creates, attaches to and starts a container, then waits for its runner's `ready`. */
  async #launch (box: Box): Promise<void> {
    const { spec, flavour, dir } = box.pool
    const image = await this.image(spec.runtime)
    const container = await this.#create(box.pool, image)
    box.container = container
    if (box.closed) { this.#remove(container); throw new FunctionError(box.stopReason ?? 'stopped') }
    const stream = await container.attach({ stream: true, stdin: true, stdout: true, stderr: true, hijack: true }) as unknown as Duplex
    box.stream = stream
    const ready = new Promise<void>((resolve, reject) => {
      const stdout = new Writable({
        write: (chunk: Buffer, _enc, cb) => {
          box.data(chunk, (line) => {
            let reply: Reply
            try {
              reply = JSON.parse(line) as Reply
            } catch {
              box.stderrTail = (box.stderrTail + line + '\n').slice(-STDERR_TAIL)
              return
            }
            if (reply.ready === true) { resolve(); return }
            if (reply.ready === false) { reject(new FunctionError(`function ${spec.name} failed to load: ${reply.error ?? ''}`.trim())); return }
            if (reply.id !== undefined) box.calls.get(reply.id)?.resolve(reply)
          }, () => { this.#destroy(box, `function ${spec.name} wrote more than ${MAX_IO_BYTES} bytes of output and was stopped`) })
          cb()
        }
      })
      const stderr = new Writable({
        write: (chunk: Buffer, _enc, cb) => { box.stderrTail = (box.stderrTail + chunk.toString('utf8')).slice(-STDERR_TAIL); cb() }
      })
      this.#docker.modem.demuxStream(stream, stdout, stderr)
      const ended = (): void => {
        box.exited = true
        reject(new FunctionError(`function ${spec.name} exited before it was ready`, { stderr: box.stderrTail }))
        void this.#died(box)
      }
      stream.once('end', ended)
      stream.once('close', ended)
      stream.on('error', (err) => { log('attach stream of %s: %s', spec.name, err.message) })
    })
    ready.catch(() => {})
    await container.start()
    if (box.closed) throw new FunctionError(box.stopReason ?? 'stopped')
    await ready
    // One round trip through the runner without the function: the first pass through the
    // container's stdio is slower than the rest, and a prewarmed container should not make a call wait for it.
    await this.#ping(box)
    log('%s v%d: container %s ready (%s, %s)', spec.name, spec.version, container.id.slice(0, 12), flavour.image, dir)
  }

  async #ping (box: Box): Promise<void> {
    const id = this.#nextId++
    await new Promise<void>((resolve, reject) => {
      box.calls.set(id, { resolve: () => { box.calls.delete(id); resolve() }, reject: (e) => { box.calls.delete(id); reject(e) } })
      box.stream?.write(`{"id":${id},"ping":true}\n`)
    })
  }

  async #create (pool: Pool, image: string): Promise<Docker.Container> {
    const options = containerOptions({
      spec: pool.spec,
      image,
      dir: pool.dir,
      owner: this.#init.owner,
      tmpfsBytes: this.#tmpfsBytes,
      unsupported: this.#unsupported,
      ...(this.#init.network !== undefined ? { network: this.#init.network } : {})
    })
    try {
      return await this.#docker.createContainer(options)
    } catch (err) {
      // Boards without the CFS or pids cgroup controllers: run without that limit, and say so once.
      const message = (err as Error).message
      const missing = /NanoCPUs/i.test(message) ? 'NanoCpus' : /pids/i.test(message) && /limit/i.test(message) ? 'PidsLimit' : undefined
      if (missing === undefined || this.#unsupported.has(missing)) throw err
      log.error('this host cannot limit %s (%s): containers run without that limit', missing === 'NanoCpus' ? 'CPU' : 'processes', message)
      this.#unsupported.add(missing)
      return await this.#create(pool, image)
    }
  }

  /** The container's runner went away by itself: tell its calls why (out of memory, exit code). */
  async #died (box: Box): Promise<void> {
    if (box.state === 'closing') return
    const { spec } = box.pool
    let reason = `function ${spec.name}'s container stopped`
    let exitCode: number | undefined
    try {
      // The attach stream ends as the process dies; the container's state may lag a little behind.
      await Promise.race([box.container?.wait(), new Promise(resolve => setTimeout(resolve, 2000).unref())])
      const info = await box.container?.inspect()
      if (info?.State.OOMKilled === true) reason = `function ${spec.name} ran out of memory (limit ${mib(Math.max(MIN_MEMORY_BYTES, spec.memoryBytes))}) and was killed`
      else if (info !== undefined) {
        exitCode = info.State.ExitCode
        reason = `function ${spec.name} exited with code ${exitCode}${exitCode === 137 ? ' (killed)' : ''}`
      }
    } catch (err) {
      log('inspect after exit: %s', (err as Error).message)
    }
    const stderr = box.stderrTail.trim()
    for (const call of [...box.calls.values()]) call.reject(new FunctionError(reason, { stderr, ...(exitCode === undefined ? {} : { exitCode }) }))
    this.#destroy(box, reason)
  }

  /** Takes a container out of service and removes it (in the background); its calls fail with `reason`. */
  #destroy (box: Box, reason: string): void {
    if (box.state === 'closing') return
    const wasStarting = box.state === 'starting'
    box.state = 'closing'
    box.stopReason = reason
    if (box.idleTimer !== undefined) clearTimeout(box.idleTimer)
    if (box.pool.boxes.delete(box)) this.#containers--
    for (const [id, call] of [...box.calls]) {
      box.calls.delete(id)
      call.reject(new FunctionError(reason, { stderr: box.stderrTail.trim() }))
    }
    if (wasStarting) box.onFail(new FunctionError(reason, { stderr: box.stderrTail.trim() }))
    box.stream?.destroy()
    if (box.container !== undefined) this.#remove(box.container)
    log('%s v%d: container %s removed: %s', box.pool.spec.name, box.pool.spec.version, box.container?.id.slice(0, 12) ?? '(not created)', reason)
    this.#pump()
  }

  #remove (container: Docker.Container): void {
    const p = container.remove({ force: true }).then(() => {}, (err: Error) => {
      if (!/No such container|is already in progress/.test(err.message)) log.error('cannot remove container %s: %s', container.id.slice(0, 12), err.message)
    }).finally(() => { this.#removing.delete(p) })
    this.#removing.add(p)
  }
}

function hasLive (pool: Pool): boolean {
  for (const b of pool.boxes) if (b.state === 'ready' && !b.spent && !b.exited) return true
  return false
}

function rank (box: Box): number {
  return (box.state === 'ready' ? 0 : 1_000_000) + box.load * 1000 - box.lastUsed / 1e9
}

/** Files readable, and directories listable, by the unprivileged user the function runs as. */
function readable (path: string): void {
  const st = lstatSync(path)
  if (st.isSymbolicLink()) return
  if (st.isDirectory()) {
    chmodSync(path, 0o755)
    for (const entry of readdirSync(path)) readable(join(path, entry))
  } else {
    chmodSync(path, (st.mode & 0o100) !== 0 ? 0o755 : 0o644)
  }
}

async function raceAbort (p: Promise<void>, signal: AbortSignal | undefined, onAbort: () => void): Promise<void> {
  if (signal === undefined) { await p; return }
  if (signal.aborted) throw abortError(signal, 'deadline exceeded before the container started')
  let listener: (() => void) | undefined
  try {
    await Promise.race([p, new Promise<never>((_resolve, reject) => {
      listener = () => { onAbort(); reject(abortError(signal, 'deadline exceeded while the container started')) }
      signal.addEventListener('abort', listener, { once: true })
    })])
  } finally {
    if (listener !== undefined) signal.removeEventListener('abort', listener)
  }
}
