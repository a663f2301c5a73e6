import { setMaxListeners } from 'node:events'
import { heldBack, logger, Throttle } from '../log.js'
import { raceSignal } from 'race-signal'
import {
  abortError, BadRequestError, BusyError, parseTarget, DeadlineExceededError, FunctionNotFoundError, InterruptedError, RuntimeKind, UntrustedManifestError,
  type FunctionRef, type FunctionSpec, type InvokeRequest, type InvokeResult, type InvokeTimings, type PeerLoad
} from '../../protocol/index.js'
import { NoCandidateError, OverloadedError } from '../errors.js'
import { POLICIES, type Candidate, type CandidateView, type Policy, type Ranking } from './policies/index.js'
import { reportedLoad, short, type RemoteCall } from './invoke-client.js'
import { deadline } from '../deadline.js'
import { Backlog, fetchEstimateMs, RunTimes } from './load-estimates.js'
import type { Runtime } from '../../runtimes/runtime.js'
import type { CodeLayout } from '../code/fetch.js'
import type { Vouched } from '../code/trust.js'
import type { PeerTable } from '../swarm/peer-table.js'
import { refKey, type FunctionRegistry, type KnownFunction } from '../code/registry.js'
import type { RuntimeSet } from '../../runtimes/index.js'
import { outcomeOf, UNKNOWN_FUNCTION, type Metrics } from '../metrics.js'
import type { CallLog } from './call-log.js'
import type { RunOptions, RunResult } from '../../runtimes/runtime.js'

/** Failed calls are logged once per function and error kind every 10 s. */
const failedCalls = new Throttle(10_000)
const log = logger('edge:agent:scheduler')

/** Bound on one shared fetch-and-compile of a function's code. */
const FETCH_DEADLINE_MS = 60_000

export interface InvokeOptions {
  policy?: string
  /** For the `peer` policy. */
  peer?: string
  /** Overall deadline for the call, all attempts included. */
  timeoutMs?: number
  /**
   * Whoever asked gave up (an HTTP client that left, the async runner stopping): the call stops
   * wherever it is — queued, running here, or on a peer, which is told — and fails with the reason.
   */
  signal?: AbortSignal
}

export interface Attempt {
  peerId: string
  outcome: 'ok' | 'busy' | 'gone' | 'failed' | 'timeout' | 'cancelled' | 'interrupted'
  message?: string
  /** With busy: when that place expected room again. */
  retryAfterMs?: number
}

export interface InvokeOutcome {
  output: Uint8Array
  ranOn: string
  local: boolean
  /** Ran in code (a module, a container) that was ready before the call. */
  warm: boolean
  function: { name: string, version: number, sha256: string }
  /** The runtime it ran in, as its manifest says. */
  runtime: RuntimeKind
  policy: string
  timings: InvokeTimings & { networkMs: number, totalMs: number }
  attempts: Attempt[]
  ranking: Ranking
}

type Placement = Pick<InvokeOutcome, 'output' | 'ranOn' | 'local' | 'warm'> & { timings: InvokeTimings & { networkMs: number } }

/** Sends a call to a peer (InvokeClient over /edge/invoke/1). */
export interface RemoteInvoker {
  call: (peer: string, call: RemoteCall, options: { signal: AbortSignal }) => Promise<InvokeResult>
}

/** Gets code chunk by chunk from holders and DHT providers (FetchService over /edge/fetch/1). */
export interface CodeFetcher {
  fetchChunks: (layout: CodeLayout, hints: string[], options?: { signal?: AbortSignal }) => Promise<{ code: Uint8Array }>
}

/** Vouches for functions by their signed manifests (Trust). */
export interface Authoriser {
  authorise: (ref: FunctionRef, options?: { signal?: AbortSignal }) => Promise<Vouched>
  isAuthorised: (ref: FunctionRef) => boolean
  /** Peers calls may go to (Trust.trustsPeer): an untrusted member's adverts, however free it says it is, place nothing. */
  trustsPeer: (peerId: string) => boolean
  /** Why a peer is not trusted, for the refusal (Trust.distrust). */
  distrust?: (peerId: string) => string
}

export interface SchedulerInit {
  selfId: string
  registry: FunctionRegistry
  runtimes: RuntimeSet
  peers: PeerTable
  client: RemoteInvoker
  fetcher: CodeFetcher
  trust: Authoriser
  metrics: Metrics
  /** Keeps fetched code here (registry, runtime and manifest bookkeeping); throws StorageFullError when it cannot. */
  hold: (spec: FunctionSpec, code: Uint8Array, cids: string[]) => void
  /** Where the calls that run here are written down, with what they printed (`edge logs`). */
  callLog?: CallLog
}

function timings (r: { queueMs: number, runMs: number, initMs?: number }, fetchMs: number): InvokeTimings {
  return { queueMs: r.queueMs, fetchMs, runMs: r.runMs, ...(r.initMs === undefined ? {} : { initMs: r.initMs }) }
}

function policyNamed (name = 'local-first'): Policy {
  const policy = POLICIES[name]
  if (policy === undefined) throw new BadRequestError(`unknown policy '${name}': use one of ${Object.keys(POLICIES).join(', ')}`)
  return policy
}

/** An outcome as the HTTP API answers it (the output in base64; the ranking only when asked). */
export function outcomeJson (outcome: InvokeOutcome, explain = false): Record<string, unknown> {
  const { output, ranking, ...rest } = outcome
  return { ...rest, output: Buffer.from(output).toString('base64'), ...(explain ? { ranking } : {}) }
}

/** DHT look-ups the calls of one peer may start per second, and at once. */
export const LOOKUPS_PER_SECOND = 4
export const LOOKUP_BURST = 4

/**
 * Errors after which the next candidate is tried: the call did not run there, or was cut off
 * there (the peer died, or stopped: InterruptedError from a peer).
 */
const RETRYABLE = new Set(['BusyError', 'PeerGoneError', 'FetchFailedError', 'FunctionNotFoundError', 'UntrustedManifestError', 'InterruptedError'])

const OUTCOME: Record<string, Attempt['outcome']> = {
  BusyError: 'busy',
  PeerGoneError: 'gone',
  DeadlineExceededError: 'timeout',
  CancelledError: 'cancelled',
  InterruptedError: 'interrupted'
}

export class InvocationError extends Error {
  readonly attempts: Attempt[]
  readonly code: string
  readonly stderr: string | undefined
  readonly retryAfterMs: number | undefined
  constructor (cause: Error & { code?: string, stderr?: string, retryAfterMs?: number }, attempts: Attempt[]) {
    super(cause.message, { cause })
    this.name = cause.name
    this.code = cause.code ?? 'INTERNAL'
    this.stderr = cause.stderr
    this.retryAfterMs = cause.retryAfterMs
    this.attempts = attempts
  }
}

/**
 * Decides where each call runs and carries it there: local runtime, or a peer over
 * `/edge/invoke/1`. Late binding: candidates are tried in the policy's order; a busy or dead peer
 * sends the call to the next one within the caller's deadline. Offloaded calls arriving from peers
 * run here or are refused as BUSY — never offloaded again.
 */
export class Scheduler {
  readonly #init: SchedulerInit
  readonly #preparing = new Map<string, Promise<FunctionSpec>>()
  /** Per peer: look-ups its calls may still start now (a bucket of LOOKUP_BURST, refilled at LOOKUPS_PER_SECOND), and when it was last refilled. */
  readonly #lookupBudget = new Map<string, { tokens: number, at: number }>()
  /** Observed run times per function, here and on peers: the expected wait of a queue is its work, not its length. */
  readonly runTimes = new RunTimes()
  /** The work each local runtime has taken on (running and queued calls with their estimates). */
  readonly #backlogs = new Map<Runtime, Backlog>()
  /** Aborted by stop(): every call still here is cut off as interrupted. */
  #stopping = new AbortController()

  constructor (init: SchedulerInit) {
    this.#init = init
  }

  start (): void {
    this.#stopping = new AbortController()
    // Every call in flight listens to it.
    setMaxListeners(Infinity, this.#stopping.signal)
  }

  /** Cuts off every call still waiting or running through this scheduler: they fail as interrupted. */
  stop (): void {
    this.#stopping.abort(new InterruptedError('the agent is stopping: the call was cut off'))
  }

  /** Runs `NAME` (its newest version) or `NAME@VERSION`. */
  async invoke (target: string, input: Uint8Array, options: InvokeOptions = {}): Promise<InvokeOutcome> {
    const started = performance.now()
    // Functions known here by name; any other (a typo, a flood of made-up names) shares one series.
    const asked = target.split('@')[0] ?? target
    const name = this.#init.registry.highestVersion(asked) > 0 ? asked : UNKNOWN_FUNCTION
    try {
      const outcome = await this.#invoke(target, input, options)
      this.#init.metrics.call(name, outcome.local ? 'local' : 'offloaded', 'ok', performance.now() - started)
      if (outcome.local && !outcome.warm) this.#init.metrics.coldStart(name, outcome.runtime)
      return outcome
    } catch (err) {
      const e = err as Error
      const last = (e as { attempts?: Attempt[] }).attempts?.at(-1)
      this.#init.metrics.call(name, last === undefined ? 'none' : last.peerId === this.#init.selfId ? 'local' : 'offloaded', outcomeOf(e), performance.now() - started)
      const held = failedCalls.allow(`${target} ${e.name}`)
      if (held !== undefined) log.info('a call of %s failed: %s: %s%s', target, e.name, e.message, heldBack(held))
      throw err
    }
  }

  async #invoke (target: string, input: Uint8Array, options: InvokeOptions): Promise<InvokeOutcome> {
    const started = performance.now()
    const { name, version } = parseTarget(target)
    const policy = policyNamed(options.policy)
    const { known, vouched } = await this.#resolveTrusted(name, version, options.timeoutMs ?? 30_000)
    // The runtime as the signed manifest says (what gossip says of a function is not trusted).
    const kind = vouched.runtime
    const timeoutMs = options.timeoutMs ?? Math.max(30_000, vouched.timeoutMs * 2)
    const call = deadline([options.signal, this.#stopping.signal], timeoutMs - (performance.now() - started))
    try {
      return await this.#place(known, kind, fetchEstimateMs(vouched.size), input, policy, options, started, timeoutMs, call.signal)
    } finally {
      call.done()
    }
  }

  async #place (known: KnownFunction, kind: RuntimeKind, fetchMs: number, input: Uint8Array, policy: Policy, options: InvokeOptions, started: number, timeoutMs: number, deadline: AbortSignal): Promise<InvokeOutcome> {
    const name = known.ref.name
    if (options.peer !== undefined && options.peer !== this.#init.selfId && !this.#init.trust.trustsPeer(options.peer)) {
      throw new NoCandidateError(`peer ${options.peer} gets no calls from here, as ${this.#init.trust.distrust?.(options.peer) ?? 'this agent does not trust it'}`)
    }
    const ranking = policy.rank({
      self: this.#selfView(known, kind, fetchMs),
      peers: this.#peerViews(known, kind, fetchMs),
      deadlineMs: timeoutMs - (performance.now() - started),
      ...(options.peer !== undefined ? { target: options.peer } : {})
    })
    if (this.#init.runtimes.for(kind) === undefined && ranking.candidates.some(c => c.local)) {
      // A function this agent keeps but cannot run (a container function, and no Docker here): peers only.
      ranking.candidates = ranking.candidates.filter(c => !c.local)
      ranking.skipped.push({ peerId: this.#init.selfId, reason: `no ${kind} runtime here (${kind === RuntimeKind.wasm ? 'turned off' : 'no Docker'})` })
    }
    if (ranking.candidates.length === 0) {
      if (ranking.overloaded !== undefined) {
        const wait = ranking.overloaded.retryAfterMs
        throw new OverloadedError(`every place that could run '${name}' is busy: the soonest expects a free slot in ~${wait} ms, and the call would not finish within its ${timeoutMs} ms: try again later, or give it a longer --timeout`, { retryAfterMs: wait })
      }
      const why = ranking.skipped.map(s => `${short(s.peerId)}: ${s.reason}`).join('; ')
      throw new NoCandidateError(`no place can run '${name}' now${why === '' ? '' : ` (${why})`}`)
    }
    const attempts: Attempt[] = []
    let lastError: Error | undefined
    for (const candidate of ranking.candidates) {
      if (deadline.aborted) break
      try {
        const outcome = candidate.local
          ? await this.#runLocal(known, input, candidate, deadline, started + timeoutMs)
          : await this.#runRemote(known, kind, input, candidate, deadline, started + timeoutMs)
        attempts.push({ peerId: candidate.peerId, outcome: 'ok' })
        const totalMs = performance.now() - started
        return { ...outcome, runtime: kind, policy: policy.name, function: { ...known.ref }, attempts, ranking, timings: { ...outcome.timings, totalMs } }
      } catch (err) {
        const e = err as Error
        lastError = e
        const retryAfterMs = (e as { retryAfterMs?: unknown }).retryAfterMs
        attempts.push({ peerId: candidate.peerId, outcome: OUTCOME[e.name] ?? 'failed', message: e.message, ...(typeof retryAfterMs === 'number' ? { retryAfterMs } : {}) })
        if (!RETRYABLE.has(e.name) || deadline.aborted) break
        log('attempt on %s: %s, trying the next candidate', short(candidate.peerId), e.message)
      }
    }
    if (deadline.aborted && lastError?.name !== 'FunctionError') {
      lastError = abortError(deadline, `'${name}' did not complete within ${timeoutMs} ms`)
    } else if (lastError?.name === 'BusyError') {
      const soonest = Math.min(...attempts.map(a => a.retryAfterMs ?? Number.POSITIVE_INFINITY))
      lastError = new OverloadedError(`every place that could run '${name}' is busy (${attempts.length} tried): try again later`, Number.isFinite(soonest) ? { retryAfterMs: soonest } : {})
    }
    throw new InvocationError(lastError ?? new NoCandidateError('no candidate'), attempts)
  }

  /**
   * Checks, without running anything, that a call could be made: the policy exists, and the
   * function (its newest trusted version, or the one asked for) is known and trusted here. Returns
   * the version a call would run, for async calls to keep.
   */
  async check (target: string, options: InvokeOptions = {}): Promise<FunctionRef> {
    const { name, version } = parseTarget(target)
    policyNamed(options.policy)
    const { known } = await this.#resolveTrusted(name, version, options.timeoutMs ?? 30_000)
    return known.ref
  }

  /**
   * The newest version of `name` (or the one asked for) whose manifest a trusted key signed.
   * Nothing runs, here or on a peer, for a caller that does not trust the function's deployer; a
   * newer version from an untrusted key (gossip is open to every member of the swarm) is set aside,
   * not obeyed.
   */
  async #resolveTrusted (name: string, version: number | undefined, timeoutMs: number): Promise<{ known: KnownFunction, vouched: Vouched }> {
    const signal = AbortSignal.timeout(timeoutMs)
    let refused: Error | undefined
    for (let i = 0; i < 8; i++) {
      let known: KnownFunction
      try {
        known = this.#init.registry.resolve(name, version)
      } catch (err) {
        if (refused !== undefined) throw refused
        const signers = this.#init.registry.refusedSigners(name, version)
        if (signers.length === 0) throw err
        const which = version === undefined ? `every known version of '${name}' is` : `'${name}' v${version} is`
        throw new UntrustedManifestError(`${which} signed by a key this agent does not trust (${signers.join(', ')}): 'edge-agent trust add KEY' on it to run it`, { signer: signers[0] })
      }
      try {
        return { known, vouched: await this.#init.trust.authorise(known.ref, { signal }) }
      } catch (err) {
        // Signed by a key not trusted here, or vouched for by no trusted manifest (announced or
        // advertised by a member that made it up): set aside, and the next older version is tried.
        if (!(err instanceof UntrustedManifestError) || signal.aborted) throw err
        refused = err
        this.#init.registry.refuse(known.ref, err.signer)
      }
    }
    throw refused ?? new Error('unreachable')
  }

  /** Makes `NAME` (its newest version) or `NAME@VERSION` ready to run here: trusted, held (fetched if need be) and prepared. */
  async prepareHere (target: string, timeoutMs = FETCH_DEADLINE_MS): Promise<FunctionSpec> {
    const { name, version } = parseTarget(target)
    const { known } = await this.#resolveTrusted(name, version, timeoutMs)
    const { spec } = await this.#ensureLocal(known.ref, [...known.holders], AbortSignal.timeout(timeoutMs))
    return spec
  }

  /** Runs a call offloaded to us by a peer, here or nowhere. */
  async executeOffloaded (request: InvokeRequest, from: string, signal: AbortSignal): Promise<{ output: Uint8Array, warm: boolean, timings: InvokeTimings }> {
    const deadlineAt = performance.now() + request.deadlineMs
    const ref = request.fn
    if (this.#init.registry.isDeleted(ref.name, ref.version)) throw new FunctionNotFoundError(`function ${ref.name} v${ref.version} was deleted`)
    const kind = this.#init.registry.specOf(ref)?.runtime
    if (kind !== undefined) {
      const runtime = this.#init.runtimes.for(kind)
      if (runtime === undefined) throw new BusyError(`this agent cannot run ${kind} functions`)
      const cap = runtime.capacity()
      if (request.queue !== true && cap.busy >= cap.slots) throw new BusyError('all slots busy', { retryAfterMs: this.#localWaitMs(kind, this.runTimes.estimate(ref.sha256, kind)) })
    }
    if (!this.#init.trust.isAuthorised(ref) && !this.#preparing.has(refKey(ref))) this.#spendLookup(from, ref)
    const holders = [...new Set([...request.holders, from])]
    const { spec, fetchMs } = await this.#ensureLocal(ref, holders, signal)
    if (this.#init.runtimes.for(spec.runtime) === undefined) throw new BusyError(`this agent cannot run ${spec.runtime} functions`)
    const r = await this.#run(spec, request.input, { queue: request.queue === true, signal }, from, deadlineAt)
    return { output: r.output, warm: r.warm && fetchMs === 0, timings: timings(r, fetchMs) }
  }

  /**
   * A call of a version this agent has not vouched for costs a DHT look-up: each peer may start
   * LOOKUPS_PER_SECOND of them (LOOKUP_BURST at once); beyond, its call is BUSY at once. A peer
   * sending calls for made-up names had kept the agent's event loop busy with DHT queries.
   */
  #spendLookup (from: string, ref: FunctionRef): void {
    const now = performance.now()
    const b = this.#lookupBudget.get(from) ?? { tokens: LOOKUP_BURST, at: now }
    b.tokens = Math.min(LOOKUP_BURST, b.tokens + (now - b.at) * LOOKUPS_PER_SECOND / 1000)
    b.at = now
    if (b.tokens < 1) throw new BusyError(`too many calls of functions this agent does not know yet (${ref.name}): ${LOOKUPS_PER_SECOND} look-ups a second per peer`, { retryAfterMs: Math.ceil((1 - b.tokens) * 1000 / LOOKUPS_PER_SECOND) })
    b.tokens--
    this.#lookupBudget.delete(from)
    this.#lookupBudget.set(from, b)
    if (this.#lookupBudget.size > 4096) this.#lookupBudget.delete(this.#lookupBudget.keys().next().value as string)
  }

  /** This agent's load for the runtime that runs `ref`, for answers to peers; undefined for a function it does not know. */
  loadOf (ref: FunctionRef): Omit<PeerLoad, 'yours'> | undefined {
    const kind = this.#init.registry.specOf(ref)?.runtime
    if (kind === undefined) return undefined
    const cap = this.#init.runtimes.capacity(kind)
    return { slots: cap.slots, busy: cap.busy, queued: cap.queued }
  }

  #backlog (runtime: Runtime): Backlog {
    let b = this.#backlogs.get(runtime)
    if (b === undefined) {
      b = new Backlog()
      this.#backlogs.set(runtime, b)
    }
    return b
  }

  /** Expected ms before a call of `kind` handed to the local runtime now would get a slot. */
  #localWaitMs (kind: RuntimeKind, runMs: number): number {
    const runtime = this.#init.runtimes.for(kind)
    if (runtime === undefined) return Number.POSITIVE_INFINITY
    const cap = runtime.capacity()
    return this.#backlog(runtime).expectedWaitMs(cap.slots, cap.busy, runMs)
  }

  /**
   * Runs a call in the local runtime, and writes it down with what the function printed. A call
   * that may wait for a slot is refused (BUSY, with when room is expected) when the work queued
   * ahead of it would not let it finish by `deadlineAt`.
   */
  async #run (spec: FunctionSpec, input: Uint8Array, options: RunOptions, from: string, deadlineAt: number): Promise<RunResult> {
    const started = performance.now()
    const entry = { name: spec.name, version: spec.version, from }
    const runtime = this.#init.runtimes.for(spec.runtime)
    const estimate = this.runTimes.estimate(spec.sha256, spec.runtime)
    const backlog = runtime === undefined ? undefined : this.#backlog(runtime)
    if (runtime !== undefined && options.queue === true) {
      const wait = this.#localWaitMs(spec.runtime, estimate)
      const left = deadlineAt - started
      if (wait > 0 && wait + estimate > left) {
        throw new BusyError(`the calls queued here would take ~${Math.round(wait)} ms before this one starts, past the ${Math.max(0, Math.round(left))} ms left to its deadline`, { retryAfterMs: wait })
      }
    }
    const work = backlog?.add(estimate)
    try {
      const r = await this.#init.runtimes.invoke(spec, input, { ...options, onStart: () => { work?.started() } })
      this.runTimes.observe(spec.sha256, spec.runtime, r.runMs)
      this.#init.callLog?.add({ ...entry, at: Date.now(), outcome: 'ok', warm: r.warm, runMs: r.runMs, stderr: r.stderr })
      return r
    } catch (err) {
      const e = err as Error & { stderr?: string }
      // A call refused as busy never ran.
      if (e.name !== 'BusyError') this.#init.callLog?.add({ ...entry, at: Date.now(), outcome: 'error', warm: false, runMs: performance.now() - started, stderr: e.stderr ?? '', error: e.message })
      throw err
    } finally {
      work?.done()
    }
  }

  async #runLocal (known: KnownFunction, input: Uint8Array, candidate: Candidate, signal: AbortSignal, deadlineAt: number): Promise<Placement> {
    const { spec, fetchMs } = await this.#ensureLocal(known.ref, [...known.holders], signal)
    const r = await this.#run(spec, input, { queue: candidate.mayQueue, signal }, 'local', deadlineAt)
    return { output: r.output, ranOn: this.#init.selfId, local: true, warm: r.warm && fetchMs === 0, timings: { ...timings(r, fetchMs), networkMs: 0 } }
  }

  async #runRemote (known: KnownFunction, kind: RuntimeKind, input: Uint8Array, candidate: Candidate, signal: AbortSignal, deadlineAt: number): Promise<Placement> {
    const holders = [...known.holders]
    if (known.local) holders.unshift(this.#init.selfId)
    const { peers } = this.#init
    // Counted exactly: the slot is ours from now until the answer (or its absence) comes back.
    peers.callStarted(candidate.peerId, kind)
    const sent = performance.now()
    let r: InvokeResult
    try {
      r = await this.#init.client.call(candidate.peerId, { fn: known.ref, input, deadlineMs: deadlineAt - sent, holders: holders.slice(0, 16), queue: candidate.mayQueue }, { signal })
    } catch (err) {
      peers.callEnded(candidate.peerId, kind, reportedLoad(err))
      throw err
    }
    peers.callEnded(candidate.peerId, kind, r.load)
    this.runTimes.observe(known.ref.sha256, kind, r.timings.runMs)
    const roundTrip = performance.now() - sent
    const remoteMs = r.timings.queueMs + r.timings.fetchMs + r.timings.runMs
    return { output: r.output, ranOn: candidate.peerId, local: false, warm: r.warm, timings: { ...r.timings, networkMs: Math.max(0, roundTrip - remoteMs) } }
  }

  /**
   * Makes one version of a function ready to run here: its spec (limits) from its trusted signed
   * manifest — never from a caller or a holder — and its code, held here or fetched chunk by chunk
   * as the manifest lists it, then compiled. Nothing is fetched for a function this agent does not
   * trust. Concurrent calls share one fetch, which is bounded by its own deadline so that one
   * impatient caller does not fail the others. Returns the ms this caller waited.
   */
  async #ensureLocal (ref: FunctionRef, holders: string[], signal: AbortSignal): Promise<{ spec: FunctionSpec, fetchMs: number }> {
    const { runtimes, registry, fetcher } = this.#init
    const known = registry.specOf(ref)
    const heldHere = registry.holds(ref)
    if (heldHere) registry.touch(ref.sha256)
    if (known !== undefined && heldHere && runtimes.isPrepared(known) && this.#init.trust.isAuthorised(ref)) return { spec: known, fetchMs: 0 }
    const started = performance.now()
    const id = refKey(ref)
    let p = this.#preparing.get(id)
    if (p === undefined) {
      p = (async () => {
        const vouched = await this.#init.trust.authorise(ref, { signal: AbortSignal.timeout(FETCH_DEADLINE_MS) })
        const { chunks, ...fields } = vouched
        const spec: FunctionSpec = { name: ref.name, version: ref.version, sha256: ref.sha256, ...fields }
        // The same artifact may be held here under another name or version: no need to fetch it again.
        const code = await registry.readCode(ref.sha256) ??
          (await fetcher.fetchChunks({ chunks, size: spec.size, sha256: ref.sha256 }, holders, { signal: AbortSignal.timeout(FETCH_DEADLINE_MS) })).code
        if (!heldHere) {
          try {
            this.#init.hold(spec, code, chunks)
          } catch (err) {
            // No room on disk: the call still runs, from memory.
            if ((err as Error).name !== 'StorageFullError') throw err
            log('%s: %s', id, (err as Error).message)
          }
        }
        if (runtimes.for(spec.runtime) !== undefined) await runtimes.prepare(spec, code)
        return spec
      })().finally(() => { this.#preparing.delete(id) })
      this.#preparing.set(id, p)
    }
    const spec = await raceSignal(p, signal, { translateError: (s) => abortError(s, 'deadline exceeded while fetching the code') })
    return { spec, fetchMs: performance.now() - started }
  }

  #selfView (known: KnownFunction, kind: RuntimeKind, fetchMs: number): CandidateView {
    const cap = this.#init.runtimes.capacity(kind)
    const spec = known.local ? this.#init.registry.specOf(known.ref) : undefined
    const warm = spec !== undefined && this.#init.runtimes.isWarm(spec)
    const freeSlots = cap.queued > 0 ? 0 : Math.max(0, cap.slots - cap.busy)
    const runMs = this.runTimes.estimate(known.ref.sha256, kind)
    return {
      peerId: this.#init.selfId,
      local: true,
      rttMs: 0,
      freeSlots,
      slots: cap.slots,
      holds: known.local,
      warm,
      queue: cap.queued,
      inFlight: cap.busy,
      waitMs: freeSlots > 0 ? 0 : this.#localWaitMs(kind, runMs),
      runMs,
      fetchMs: known.local ? 0 : fetchMs
    }
  }

  #peerViews (known: KnownFunction, kind: RuntimeKind, fetchMs: number): CandidateView[] {
    return peerViews(this.#init.peers, { sha256: known.ref.sha256, kind, holders: known.holders, runMs: this.runTimes.estimate(known.ref.sha256, kind), fetchMs })
      .filter(v => this.#init.trust.trustsPeer(v.peerId))
  }

}

/**
 * How a call of one function sees each peer of the table that runs its kind: free slots and queue
 * by exact accounting, the expected wait for a slot, run and fetch.
 */
export function peerViews (peers: PeerTable, fn: { sha256: string, kind: RuntimeKind, holders: ReadonlySet<string>, runMs: number, fetchMs: number }): CandidateView[] {
  const { kind, runMs } = fn
  const views: CandidateView[] = []
  for (const e of peers.list()) {
    const load = e.load.get(kind)
    // A peer whose connection is gone is not offered while libp2p redials it.
    if (load === undefined || !peers.isConnected(e)) continue
    const freeSlots = peers.freeSlots(e, kind)
    const queue = peers.queued(e, kind)
    const holds = fn.holders.has(e.peerId)
    views.push({
      peerId: e.peerId,
      local: false,
      rttMs: e.rttMs,
      freeSlots,
      slots: load.slots,
      holds,
      warm: e.advert.warm.includes(fn.sha256),
      queue,
      inFlight: peers.inFlight(e, kind),
      // Full: half a call on average before one of its slots frees, then the queue ahead.
      waitMs: freeSlots > 0 ? 0 : (queue + 0.5) * runMs / Math.max(1, load.slots),
      runMs,
      fetchMs: holds ? 0 : fn.fetchMs
    })
  }
  return views
}
