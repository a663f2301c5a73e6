import type { CallLogEntry } from '../../protocol/api.js'

export type { CallLogEntry }

/** Of each call's stderr, the last this many bytes are kept. */
export const STDERR_BYTES = 4096

/**
 * The recent calls that ran here, with what each function printed: a ring of `max` entries, so a
 * busy agent keeps the newest and its memory stays bounded (at most max × STDERR_BYTES of text).
 */
export class CallLog {
  readonly #max: number
  readonly #entries: CallLogEntry[] = []
  #next = 0
  readonly #followers = new Set<(entry: CallLogEntry) => void>()

  constructor (max = 500) {
    this.#max = max
  }

  add (entry: CallLogEntry): void {
    const e = entry.stderr.length > STDERR_BYTES ? { ...entry, stderr: `…${entry.stderr.slice(-STDERR_BYTES)}` } : entry
    if (this.#entries.length < this.#max) this.#entries.push(e)
    else this.#entries[this.#next] = e
    this.#next = (this.#next + 1) % this.#max
    for (const follow of this.#followers) follow(e)
  }

  /** Calls `follow` with each entry added from now on (`edge logs -f`); returns the unsubscribe. */
  follow (follow: (entry: CallLogEntry) => void): () => void {
    this.#followers.add(follow)
    return () => { this.#followers.delete(follow) }
  }

  /** The newest `limit` entries, oldest first; of one function when `name` is given. */
  recent (options: { name?: string, limit?: number } = {}): CallLogEntry[] {
    const ordered = this.#entries.length < this.#max ? this.#entries : [...this.#entries.slice(this.#next), ...this.#entries.slice(0, this.#next)]
    const matching = options.name === undefined ? ordered : ordered.filter(e => e.name === options.name)
    return matching.slice(-(options.limit ?? 100))
  }
}
