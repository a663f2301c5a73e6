import type { RuntimeKind } from '../../protocol/index.js'

/** Weight of the newest sample in the smoothed run times. */
const ALPHA = 0.2
/** What a call of a function never seen is assumed to take, until one ran (here or on a peer). */
export const UNKNOWN_RUN_MS = 50

/**
 * Observed run times (ms), smoothed, per function (by its code's sha256), from calls that ran here
 * and calls that ran on peers (the run time they reported). Functions differ too much for one
 * average of a runtime to say anything of another function: one never seen is UNKNOWN_RUN_MS.
 */
export class RunTimes {
  readonly #byCode = new Map<string, number>()
  /** Bound on the functions remembered; the oldest entry goes first. */
  readonly #max: number

  constructor (max = 4096) {
    this.#max = max
  }

  observe (sha256: string, _kind: RuntimeKind, ms: number): void {
    if (!Number.isFinite(ms) || ms < 0) return
    const known = this.#byCode.get(sha256)
    if (known === undefined && this.#byCode.size >= this.#max) {
      const oldest = this.#byCode.keys().next().value
      if (oldest !== undefined) this.#byCode.delete(oldest)
    }
    this.#byCode.set(sha256, known === undefined ? ms : known + ALPHA * (ms - known))
  }

  /** The expected run time of one call of the function, else UNKNOWN_RUN_MS. */
  estimate (sha256: string, _kind: RuntimeKind): number {
    return this.#byCode.get(sha256) ?? UNKNOWN_RUN_MS
  }

  known (sha256: string): boolean {
    return this.#byCode.has(sha256)
  }
}

/**
 * What fetching code of `bytes` onto a place that lacks it is assumed to take: a few round trips
 * and a manifest check, then the transfer at ~30 MB/s (what pnet + noise + yamux move here).
 */
export function fetchEstimateMs (bytes: number): number {
  return 20 + bytes / 30_000
}

interface Entry { estimateMs: number, startedAt: number | undefined }

/**
 * The work this agent's runtime has taken on: every call running or waiting for a slot, with what
 * it is expected to take. The expected wait of a new call is that work spread over the slots —
 * what the queue holds, not how many calls it holds, bounds it against a call's deadline.
 */
export class Backlog {
  readonly #entries = new Set<Entry>()
  readonly #now: () => number

  constructor (now: () => number = () => performance.now()) {
    this.#now = now
  }

  /** A call handed to the runtime; `started()` when it gets a slot, `done()` when it ends. */
  add (estimateMs: number): { started: () => void, done: () => void } {
    const entry: Entry = { estimateMs, startedAt: undefined }
    this.#entries.add(entry)
    return {
      started: () => { entry.startedAt ??= this.#now() },
      done: () => { this.#entries.delete(entry) }
    }
  }

  get size (): number {
    return this.#entries.size
  }

  /**
   * ms until a call handed over now would get a slot, with `slots` slots of which `busy` are taken:
   * 0 with one free; else the remaining work of the running calls and all of the queued ones, over
   * the slots. A running call is expected to need what its estimate leaves, but at least half of
   * what it has run so far (a call that outruns its estimate is a long one) and a tenth of its
   * estimate. A busy slot this backlog knows nothing of (taken by other means) counts as half of
   * `unknownMs`.
   */
  expectedWaitMs (slots: number, busy: number, unknownMs: number): number {
    let running = 0
    let runningCount = 0
    let waiting = 0
    let queued = 0
    const now = this.#now()
    for (const e of this.#entries) {
      if (e.startedAt === undefined) {
        queued++
        waiting += e.estimateMs
      } else {
        runningCount++
        const ran = now - e.startedAt
        running += Math.max(e.estimateMs * 0.1, e.estimateMs - ran, ran / 2)
      }
    }
    if (busy < slots && queued === 0) return 0
    running += Math.max(0, Math.min(busy, slots) - runningCount) * unknownMs / 2
    return (running + waiting) / Math.max(1, slots)
  }
}
