/**
 * A seeded PRNG (mulberry32): every run of the simulation with the same seed makes the same
 * choices, so figures can be compared across designs and reruns. Not for anything cryptographic.
 */
export class Random {
  #state: number

  constructor (seed: number) {
    this.#state = seed >>> 0
  }

  /** Uniform in [0, 1). */
  next (): number {
    let t = (this.#state = (this.#state + 0x6d2b79f5) >>> 0)
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }

  /** An integer in [lo, hi]. */
  int (lo: number, hi: number): number {
    return lo + Math.floor(this.next() * (hi - lo + 1))
  }

  /** Exponentially distributed with the given mean. */
  exp (mean: number): number {
    return -mean * Math.log(1 - this.next())
  }

  pick<T> (items: readonly T[]): T {
    const item = items[Math.floor(this.next() * items.length)]
    if (item === undefined) throw new Error('pick from an empty list')
    return item
  }

  /** `k` distinct items drawn without replacement (all of them when there are fewer). */
  sample<T> (items: readonly T[], k: number): T[] {
    const copy = [...items]
    const n = Math.min(k, copy.length)
    for (let i = 0; i < n; i++) {
      const j = i + Math.floor(this.next() * (copy.length - i))
      const x = copy[i] as T
      copy[i] = copy[j] as T
      copy[j] = x
    }
    return copy.slice(0, n)
  }

  /** A new generator seeded from this one: parts of the simulation draw apart, so adding draws in one does not shift another. */
  fork (): Random {
    return new Random(Math.floor(this.next() * 4294967296))
  }
}

const BASE58 = '123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz'

/** A string shaped like an Ed25519 libp2p peer id (52 characters), so that adverts have their real size. */
export function fakePeerId (random: Random): string {
  let id = '12D3KooW'
  for (let i = 0; i < 44; i++) id += BASE58[Math.floor(random.next() * BASE58.length)] ?? '1'
  return id
}
