import { randomUUID } from 'node:crypto'
import { logger } from '../log.js'
import { BusyError, InterruptedError } from '../../protocol/index.js'
import { settledWithin } from '../deadline.js'
import { Journal, JOURNAL_VERSION, type CallOptions, type RequestError, type RequestRecord, type RequestState } from './journal.js'

const log = logger('edge:agent:async')

/** Errors after which an async call goes back to the queue: it ran nowhere, and a place may free up. */
const WAIT_AND_RETRY = new Set(['OverloadedError', 'BusyError', 'NoCandidateError'])
const RETRY_FIRST_MS = 250
const RETRY_MAX_MS = 5000
/** Finished calls kept at most (the oldest go first), whatever the TTL. */
const MAX_FINISHED = 10_000

const INTERRUPTED: RequestError = {
  name: 'InterruptedError',
  code: 'INTERRUPTED',
  message: 'the agent stopped while this call was running: it may have run in part or in full; submit it again if that is safe'
}

/** A request as listed: its record without input and result. */
export type RequestSummary = Omit<RequestRecord, 'input' | 'result'>

export interface AsyncCallsInit {
  journal: Journal
  /** Runs one call (the scheduler, with its policies and offloading); resolves to what a call that waits answers. */
  /** Runs a call; `signal` aborts (with InterruptedError) when the agent stops and the call is cut off. */
  run: (target: string, input: Uint8Array, options: CallOptions, signal: AbortSignal) => Promise<Record<string, unknown>>
  /** Async calls running at once; the rest wait in the journal's queue. */
  concurrency: number
  /** Calls accepted but not finished, beyond which new ones are refused. */
  maxPending: number
  /** How long finished calls' results are kept. */
  resultsTtlMs: number
  /** How long a call may wait for a place with a free slot before it fails as overloaded. */
  maxWaitMs: number
}

/**
 * Async invocation: a call is written to the journal before it is acknowledged (202 and an id),
 * then run in the background, at most `concurrency` at once, and its result kept for a TTL for
 * `edge poll`. A call that finds every place busy waits in the queue and is tried again, with
 * backoff, up to `maxWaitMs`. A call is marked running (durably) before it is sent, so after a
 * crash each one is either finished, still queued (and is run), or reported as interrupted — never
 * run twice by this agent.
 */
export class AsyncCalls {
  readonly #init: AsyncCallsInit
  readonly #requests = new Map<string, RequestSummary>()
  readonly #queue: string[] = []
  readonly #inFlight = new Set<Promise<void>>()
  readonly #waiters = new Map<string, Set<() => void>>()
  readonly #timers = new Set<NodeJS.Timeout>()
  #sweeper: NodeJS.Timeout | undefined
  #stopped = true
  /** Aborted when stop() gives up waiting for the calls still running. */
  #interrupt = new AbortController()

  constructor (init: AsyncCallsInit) {
    this.#init = init
  }

  /** Reads the journal back: calls cut off by a crash are failed as interrupted, queued ones are run. */
  async start (): Promise<void> {
    this.#stopped = false
    this.#interrupt = new AbortController()
    const now = Date.now()
    for (const record of this.#init.journal.load()) {
      if (record.state === 'running') {
        await this.#finish(record, { state: 'failed', error: INTERRUPTED })
      } else if (record.state === 'queued') {
        this.#requests.set(record.id, summarise(record))
        this.#queue.push(record.id)
      } else if ((record.finishedAt ?? now) + this.#init.resultsTtlMs < now) {
        await this.#init.journal.remove(record.id)
      } else {
        this.#requests.set(record.id, summarise(record))
      }
    }
    if (this.#queue.length > 0) log('%d queued async calls from before the restart', this.#queue.length)
    this.#sweeper = setInterval(() => { void this.#sweep() }, Math.min(60_000, Math.max(1000, this.#init.resultsTtlMs / 2)))
    this.#sweeper.unref()
    this.#pump()
  }

  /**
   * Stops taking calls from the queue and gives those running `graceMs` to finish. What is still
   * running then stays marked running, and is reported interrupted at the next start, unless it
   * finishes first.
   */
  async stop (graceMs = 5000): Promise<void> {
    this.#stopped = true
    clearInterval(this.#sweeper)
    for (const t of this.#timers) clearTimeout(t)
    this.#timers.clear()
    if (this.#inFlight.size === 0) return
    await settledWithin([...this.#inFlight], graceMs)
    if (this.#inFlight.size === 0) return
    // Cut off what is still running, wherever it runs, and write it down as interrupted.
    this.#interrupt.abort(new InterruptedError('the agent stopped while this call was running'))
    await settledWithin([...this.#inFlight], 1000)
  }

  /** Accepts a call: it is on disk when this resolves. */
  async submit (target: string, input: Uint8Array, options: CallOptions): Promise<RequestSummary> {
    if (this.#stopped) throw new BusyError('the agent is stopping')
    const { queued, running } = this.counts()
    const pending = queued + running
    if (pending >= this.#init.maxPending) throw new BusyError(`${pending} async calls are waiting or running, the most this agent takes: poll them, or try again later`)
    const record: RequestRecord = {
      v: JOURNAL_VERSION,
      id: randomUUID(),
      target,
      state: 'queued',
      options,
      submittedAt: Date.now(),
      dispatches: 0,
      input: Buffer.from(input).toString('base64')
    }
    await this.#init.journal.write(record)
    this.#requests.set(record.id, summarise(record))
    this.#queue.push(record.id)
    this.#pump()
    return summarise(record)
  }

  /**
   * A request with its result, once it has one; undefined for an unknown id. With `waitMs`, waits
   * up to that long for a queued or running call to finish.
   */
  async get (id: string, waitMs = 0): Promise<RequestRecord | undefined> {
    const known = this.#requests.get(id)
    if (known === undefined) return undefined
    if (waitMs > 0 && !finished(known.state)) await this.#waitFor(id, waitMs)
    const record = await this.#init.journal.read(id)
    if (record === undefined) return undefined
    const { input: _input, ...rest } = record
    return rest
  }

  /** Requests known here, newest first. */
  list (): RequestSummary[] {
    return [...this.#requests.values()].sort((a, b) => b.submittedAt - a.submittedAt)
  }

  /** How many requests are in each state, in one pass. */
  counts (): Record<RequestState, number> {
    const n: Record<RequestState, number> = { queued: 0, running: 0, done: 0, failed: 0 }
    for (const r of this.#requests.values()) n[r.state]++
    return n
  }

  #pump (): void {
    while (!this.#stopped && this.#inFlight.size < this.#init.concurrency && this.#queue.length > 0) {
      const id = this.#queue.shift() as string
      const task = this.#dispatch(id)
        .catch((err: Error) => { log.error('async call %s: %e', id, err) })
        .finally(() => {
          this.#inFlight.delete(task)
          this.#pump()
        })
      this.#inFlight.add(task)
    }
  }

  async #dispatch (id: string): Promise<void> {
    const record = await this.#init.journal.read(id)
    if (record === undefined || record.state !== 'queued' || record.input === undefined) return
    record.state = 'running'
    record.startedAt = Date.now()
    record.dispatches++
    delete record.waiting
    try {
      await this.#init.journal.write(record)
    } catch (err) {
      // Not marked running (a full disk?): it must not run, or a crash could run it twice. Later.
      log.error('cannot mark %s running: %s; trying again later', id, (err as Error).message)
      this.#later(id, RETRY_MAX_MS)
      return
    }
    this.#requests.set(id, summarise(record))
    try {
      const result = await this.#init.run(record.target, Buffer.from(record.input, 'base64'), record.options, this.#interrupt.signal)
      await this.#finish(record, { state: 'done', result })
    } catch (err) {
      const e = err as Error & { code?: string, stderr?: string }
      if (this.#stopped && e.name !== 'FunctionError') {
        // Cut off by the agent's own stop (its runtimes stop after this).
        await this.#finish(record, { state: 'failed', error: INTERRUPTED })
        return
      }
      const waitedMs = Date.now() - record.submittedAt
      if (WAIT_AND_RETRY.has(e.name) && waitedMs < this.#init.maxWaitMs && !this.#stopped) {
        await this.#requeue(record, e.message)
        return
      }
      const error: RequestError = { name: e.name, code: e.code ?? e.name, message: e.message, ...(e.stderr !== undefined ? { stderr: e.stderr } : {}) }
      if (WAIT_AND_RETRY.has(e.name)) error.message = `${e.message} (waited ${Math.round(waitedMs / 1000)} s for a free place)`
      await this.#finish(record, { state: 'failed', error })
    }
  }

  /** Back to the queue after a while: the call ran nowhere (every place busy, or none could take it). */
  async #requeue (record: RequestRecord, why: string): Promise<void> {
    record.state = 'queued'
    record.waiting = why
    await this.#init.journal.write(record)
    this.#requests.set(record.id, summarise(record))
    this.#later(record.id, Math.min(RETRY_MAX_MS, RETRY_FIRST_MS * 2 ** Math.min(10, record.dispatches - 1)))
  }

  /** Puts a queued call back in the queue after `ms`. */
  #later (id: string, ms: number): void {
    const timer = setTimeout(() => {
      this.#timers.delete(timer)
      this.#queue.push(id)
      this.#pump()
    }, ms)
    this.#timers.add(timer)
  }

  async #finish (record: RequestRecord, end: { state: 'done', result: Record<string, unknown> } | { state: 'failed', error: RequestError }): Promise<void> {
    const { input: _input, waiting: _waiting, ...rest } = record
    const final: RequestRecord = { ...rest, ...end, finishedAt: Date.now() }
    await this.#init.journal.write(final)
    this.#requests.set(final.id, summarise(final))
    for (const wake of this.#waiters.get(final.id) ?? []) wake()
    this.#waiters.delete(final.id)
  }

  async #waitFor (id: string, ms: number): Promise<void> {
    await new Promise<void>(resolve => {
      const waiters = this.#waiters.get(id) ?? new Set()
      this.#waiters.set(id, waiters)
      const done = (): void => {
        clearTimeout(timer)
        waiters.delete(done)
        if (waiters.size === 0) this.#waiters.delete(id)
        resolve()
      }
      const timer = setTimeout(done, ms)
      waiters.add(done)
    })
  }

  /** Drops finished calls older than the TTL, and the oldest beyond MAX_FINISHED, from memory and disk. */
  async #sweep (): Promise<void> {
    const cutoff = Date.now() - this.#init.resultsTtlMs
    const done = [...this.#requests.values()].filter(r => finished(r.state)).sort((a, b) => (a.finishedAt ?? 0) - (b.finishedAt ?? 0))
    const excess = done.length - MAX_FINISHED
    for (const [i, r] of done.entries()) {
      if (i >= excess && (r.finishedAt ?? 0) >= cutoff) continue
      this.#requests.delete(r.id)
      await this.#init.journal.remove(r.id).catch((err: Error) => { log.error('cannot remove %s: %s', r.id, err.message) })
    }
  }
}

function finished (state: RequestState): boolean {
  return state === 'done' || state === 'failed'
}

function summarise (record: RequestRecord): RequestSummary {
  const { input: _input, result: _result, ...rest } = record
  return rest
}
