import { BadRequestError } from './errors.js'

const BYTE_UNITS: Record<string, number> = {
  '': 1, b: 1, k: 1e3, kb: 1e3, m: 1e6, mb: 1e6, g: 1e9, gb: 1e9, kib: 1024, mib: 1024 ** 2, gib: 1024 ** 3, ki: 1024, mi: 1024 ** 2, gi: 1024 ** 3
}
const TIME_UNITS: Record<string, number> = { '': 1000, ms: 1, s: 1000, sec: 1000, m: 60_000, min: 60_000, h: 3_600_000 }

/** "64MiB", "512k", "1048576" → bytes. */
export function parseBytes (text: string): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$/.exec(text)
  const unit = BYTE_UNITS[(m?.[2] ?? '').toLowerCase()]
  if (m === null || unit === undefined) throw new BadRequestError(`bad size '${text}': use e.g. 64MiB, 512KiB or a number of bytes`)
  return Math.floor(Number(m[1]) * unit)
}

/**
 * "5s", "250ms", "2m", "1h" → ms. A bare number is seconds ("10" is 10 s), everywhere: the CLI's
 * flags, the API's and CoAP's `timeout`, a manifest's settings. The one parser of durations.
 */
export function parseDuration (text: string): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$/.exec(text)
  const unit = TIME_UNITS[(m?.[2] ?? '').toLowerCase()]
  if (m === null || unit === undefined) throw new BadRequestError(`bad duration '${text}': use e.g. 10 or 10s, 250ms, 2m or 1h (a bare number is seconds)`)
  const ms = Math.floor(Number(m[1]) * unit)
  if (ms <= 0) throw new BadRequestError(`bad duration '${text}': must be positive`)
  return ms
}
