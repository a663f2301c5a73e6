import { logger } from '@libp2p/logger'
import {
  BadRequestError, BusyError, DeadlineExceededError, FunctionNotFoundError, RuntimeKind,
  type FunctionSpec, type InvokeRequest, type InvokeResult, type InvokeTimings
} from '../protocol/index.js'
import { NoCandidateError, OverloadedError } from './errors.js'
import { POLICIES, type Candidate, type CandidateView, type Ranking } from './policies/index.js'
import { short, type RemoteCall } from './invoke-client.js'
import type { FetchedCode } from './fetch.js'
import type { PeerTable } from './peer-table.js'
import type { FunctionRegistry, KnownFunction } from './registry.js'
import type { Runtime } from '../runtimes/index.js'
import type { Metrics } from './metrics.js'

const log = logger('edge:agent:scheduler')

export interface InvokeOptions {
  policy?: string
  /** For the `peer` policy. */
  peer?: string
  /** Overall deadline for the call, all attempts included. */
  timeoutMs?: number
}

export interface Attempt {
  peerId: string
  outcome: 'ok' | 'busy' | 'gone' | 'failed' | 'timeout'
  message?: string
}

export interface InvokeOutcome {
  output: Uint8Array
  ranOn: string
  local: boolean
  warm: boolean
  function: { name: string, version: number, sha256: string }
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

/** Gets code from peers that hold it (FetchService over /edge/fetch/1). */
export interface CodeFetcher {
  fetch: (name: string, sha256: string, peers: string[], options?: { signal?: AbortSignal }) => Promise<FetchedCode>
}

export interface SchedulerInit {
  selfId: string
  registry: FunctionRegistry
  runtime: Runtime
  peers: PeerTable
  client: RemoteInvoker
  fetcher: CodeFetcher
  metrics: Metrics
}

/** Errors after which the next candidate is tried: the call did not run there. */
const RETRYABLE = new Set(['BusyError', 'PeerGoneError', 'FetchFailedError', 'FunctionNotFoundError'])

export class InvocationError extends Error {
  readonly attempts: Attempt[]
  readonly code: string
  readonly stderr: string | undefined
  constructor (cause: Error & { code?: string, stderr?: string }, attempts: Attempt[]) {
    super(cause.message, { cause })
    this.name = cause.name
    this.code = cause.code ?? 'INTERNAL'
    this.stderr = cause.stderr
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
  readonly #preparing = new Map<string, Promise<void>>()

  constructor (init: SchedulerInit) {
    this.#init = init
  }

  async invoke (name: string, input: Uint8Array, options: InvokeOptions = {}): Promise<InvokeOutcome> {
    const started = performance.now()
    const policy = POLICIES[options.policy ?? 'local-first']
    if (policy === undefined) throw new BadRequestError(`unknown policy '${options.policy ?? ''}': use one of ${Object.keys(POLICIES).join(', ')}`)
    const known = this.#init.registry.resolve(name)
    const timeoutMs = options.timeoutMs ?? Math.max(30_000, (known.spec?.timeoutMs ?? 0) * 2)
    const deadline = AbortSignal.timeout(timeoutMs)
    const ranking = policy.rank({ self: this.#selfView(known), peers: this.#peerViews(known), ...(options.peer !== undefined ? { target: options.peer } : {}) })
    if (ranking.candidates.length === 0) {
      const why = ranking.skipped.map(s => `${short(s.peerId)}: ${s.reason}`).join('; ')
      throw new NoCandidateError(`no place can run '${name}' now${why === '' ? '' : ` (${why})`}`)
    }
    const attempts: Attempt[] = []
    let lastError: Error | undefined
    for (const candidate of ranking.candidates) {
      if (deadline.aborted) break
      try {
        const outcome = candidate.local
          ? await this.#runLocal(known, input, candidate, deadline)
          : await this.#runRemote(known, input, candidate, deadline, started + timeoutMs)
        attempts.push({ peerId: candidate.peerId, outcome: 'ok' })
        const totalMs = performance.now() - started
        this.#init.metrics.invocation(outcome.local ? 'local' : 'remote', 'ok', totalMs)
        return { ...outcome, policy: policy.name, function: { ...known.ref }, attempts, ranking, timings: { ...outcome.timings, totalMs } }
      } catch (err) {
        const e = err as Error
        lastError = e
        const outcome = e.name === 'BusyError' ? 'busy' : e.name === 'PeerGoneError' ? 'gone' : e.name === 'DeadlineExceededError' ? 'timeout' : 'failed'
        attempts.push({ peerId: candidate.peerId, outcome, message: e.message })
        if (!RETRYABLE.has(e.name)) break
        log('attempt on %s: %s, trying the next candidate', short(candidate.peerId), e.message)
      }
    }
    this.#init.metrics.invocation('none', 'error', performance.now() - started)
    if (deadline.aborted && lastError?.name !== 'FunctionError') {
      lastError = new DeadlineExceededError(`'${name}' did not complete within ${timeoutMs} ms`)
    } else if (lastError?.name === 'BusyError') {
      lastError = new OverloadedError(`every place that could run '${name}' is busy (${attempts.length} tried): try again later`)
    }
    throw new InvocationError(lastError ?? new NoCandidateError('no candidate'), attempts)
  }

  /** Runs a call offloaded to us by a peer, here or nowhere. */
  async executeOffloaded (request: InvokeRequest, from: string, signal: AbortSignal): Promise<{ output: Uint8Array, warm: boolean, timings: InvokeTimings }> {
    if (this.#init.registry.isDeleted(request.fn.name, request.fn.version)) throw new FunctionNotFoundError(`function ${request.fn.name} v${request.fn.version} was deleted`)
    const cap = this.#init.runtime.capacity()
    if (request.queue !== true && cap.busy >= cap.slots) throw new BusyError('all slots busy')
    const holders = [...new Set([...request.holders, from])]
    const fetchMs = await this.#ensureLocal(request.fn, holders, signal)
    const r = await this.#init.runtime.invoke(request.fn, request.input, { queue: request.queue === true, signal })
    return { output: r.output, warm: r.warm && fetchMs === 0, timings: { queueMs: r.queueMs, fetchMs, runMs: r.runMs } }
  }

  async #runLocal (known: KnownFunction, input: Uint8Array, candidate: Candidate, signal: AbortSignal): Promise<Placement> {
    const spec = await this.#specFor(known, signal)
    const fetchMs = await this.#ensureLocal(spec, [...known.holders], signal)
    const r = await this.#init.runtime.invoke(spec, input, { queue: candidate.mayQueue, signal })
    return { output: r.output, ranOn: this.#init.selfId, local: true, warm: r.warm && fetchMs === 0, timings: { queueMs: r.queueMs, fetchMs, runMs: r.runMs, networkMs: 0 } }
  }

  async #runRemote (known: KnownFunction, input: Uint8Array, candidate: Candidate, signal: AbortSignal, deadlineAt: number): Promise<Placement> {
    const spec = await this.#specFor(known, signal)
    const holders = [...known.holders]
    if (known.local) holders.unshift(this.#init.selfId)
    this.#init.peers.noteSent(candidate.peerId)
    const sent = performance.now()
    const r = await this.#init.client.call(candidate.peerId, { fn: spec, input, deadlineMs: deadlineAt - sent, holders: holders.slice(0, 16), queue: candidate.mayQueue }, { signal })
    const roundTrip = performance.now() - sent
    const remoteMs = r.timings.queueMs + r.timings.fetchMs + r.timings.runMs
    return { output: r.output, ranOn: candidate.peerId, local: false, warm: r.warm, timings: { ...r.timings, networkMs: Math.max(0, roundTrip - remoteMs) } }
  }

  /** The full spec (limits) of a function known only by reference: fetch it with the code. */
  async #specFor (known: KnownFunction, signal: AbortSignal): Promise<FunctionSpec> {
    if (known.spec !== undefined) return known.spec
    const fetched = await this.#init.fetcher.fetch(known.ref.name, known.ref.sha256, [...known.holders], { signal })
    this.#hold(fetched.spec, fetched.code)
    return fetched.spec
  }

  /** Makes the code ready to run here, fetching it from holders if needed; returns ms spent fetching. */
  async #ensureLocal (spec: FunctionSpec, holders: string[], signal: AbortSignal): Promise<number> {
    const { runtime, registry, fetcher } = this.#init
    if (runtime.isPrepared(spec)) return 0
    const started = performance.now()
    let p = this.#preparing.get(spec.sha256)
    if (p === undefined) {
      p = (async () => {
        let code = await registry.readCode(spec.sha256)
        if (code === undefined) {
          const fetched = await fetcher.fetch(spec.name, spec.sha256, holders, { signal })
          code = fetched.code
          this.#hold(fetched.spec, code)
        }
        await runtime.prepare(spec, code)
      })().finally(() => { this.#preparing.delete(spec.sha256) })
      this.#preparing.set(spec.sha256, p)
    }
    await p
    return performance.now() - started
  }

  #hold (spec: FunctionSpec, code: Uint8Array): void {
    const { replaced } = this.#init.registry.hold(spec, code)
    if (replaced !== undefined && !this.#init.registry.holdsCode(replaced.sha256)) this.#init.runtime.release(replaced.sha256)
  }

  #selfView (known: KnownFunction): CandidateView {
    const cap = this.#init.runtime.capacity()
    return { peerId: this.#init.selfId, local: true, rttMs: 0, freeSlots: Math.max(0, cap.slots - cap.busy), holds: known.local, queue: cap.queued }
  }

  #peerViews (known: KnownFunction): CandidateView[] {
    const { peers } = this.#init
    return peers.list()
      .filter(e => e.advert.runtimes.some(r => r.kind === (known.spec?.runtime ?? RuntimeKind.wasm)))
      .map(e => ({
        peerId: e.peerId,
        local: false,
        rttMs: e.rttMs,
        freeSlots: peers.freeSlots(e, known.spec?.runtime ?? RuntimeKind.wasm),
        holds: known.holders.has(e.peerId),
        queue: e.advert.queue
      }))
  }
}
