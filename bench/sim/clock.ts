/**
 * A discrete-event scheduler with virtual time: events run in time order (ties in the order they
 * were scheduled, so runs are deterministic), and nothing waits on the wall clock. Time is in ms,
 * fractional; the agents' code is given `nowMs` (whole ms, as Date.now would be).
 */
export class Clock {
  #now: number
  #seq = 0
  readonly #times: number[] = []
  readonly #seqs: number[] = []
  readonly #actions: Array<() => void> = []
  #ran = 0

  constructor (start = 0) {
    this.#now = start
  }

  get now (): number {
    return this.#now
  }

  /** The clock as the agents read it: whole ms. */
  readonly nowMs = (): number => Math.floor(this.#now)

  /** Events run so far. */
  get ran (): number {
    return this.#ran
  }

  at (time: number, action: () => void): void {
    this.#push(Math.max(time, this.#now), this.#seq++, action)
  }

  after (delayMs: number, action: () => void): void {
    this.at(this.#now + delayMs, action)
  }

  /** Runs `action` every `periodMs`, first at `firstAt`, while it returns true. */
  every (periodMs: number, firstAt: number, action: () => boolean): void {
    const step = (): void => { if (action()) this.after(periodMs, step) }
    this.at(firstAt, step)
  }

  /**
   * Runs events up to and including `until`. Yields to the microtask queue every few thousand
   * events: the agents' code is async in places (a publish is awaited), and its continuations
   * must not pile up.
   */
  async run (until: number): Promise<void> {
    let sinceYield = 0
    while (this.#times.length > 0 && (this.#times[0] as number) <= until) {
      const [time, action] = this.#pop()
      this.#now = time
      action()
      this.#ran++
      if (++sinceYield >= 4096) {
        sinceYield = 0
        await null
      }
    }
    this.#now = Math.max(this.#now, until)
    await null
  }

  #less (i: number, j: number): boolean {
    const a = this.#times[i] as number
    const b = this.#times[j] as number
    return a < b || (a === b && (this.#seqs[i] as number) < (this.#seqs[j] as number))
  }

  #swap (i: number, j: number): void {
    const t = this.#times[i] as number; this.#times[i] = this.#times[j] as number; this.#times[j] = t
    const s = this.#seqs[i] as number; this.#seqs[i] = this.#seqs[j] as number; this.#seqs[j] = s
    const a = this.#actions[i] as () => void; this.#actions[i] = this.#actions[j] as () => void; this.#actions[j] = a
  }

  #push (time: number, seq: number, action: () => void): void {
    this.#times.push(time)
    this.#seqs.push(seq)
    this.#actions.push(action)
    let i = this.#times.length - 1
    while (i > 0) {
      const parent = (i - 1) >> 1
      if (!this.#less(i, parent)) break
      this.#swap(i, parent)
      i = parent
    }
  }

  #pop (): [number, () => void] {
    const time = this.#times[0] as number
    const action = this.#actions[0] as () => void
    const last = this.#times.length - 1
    this.#swap(0, last)
    this.#times.pop()
    this.#seqs.pop()
    this.#actions.pop()
    let i = 0
    const n = this.#times.length
    for (;;) {
      const l = 2 * i + 1
      const r = l + 1
      let m = i
      if (l < n && this.#less(l, m)) m = l
      if (r < n && this.#less(r, m)) m = r
      if (m === i) break
      this.#swap(i, m)
      i = m
    }
    return [time, action]
  }
}
