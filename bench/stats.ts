import { readFileSync } from 'node:fs'

/** The p-quantile (0…1) of samples sorted ascending, by the nearest rank below. */
export function pct (sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))] ?? NaN
}

/** Sorted ascending, in a copy. */
export function sorted (samples: number[]): number[] {
  return [...samples].sort((a, b) => a - b)
}

/** Resident memory, and the part of it that is the process's own (not the pages of the node binary and libraries, which every agent on a machine shares). */
export function memMiB (pid: number): { rss: number, anon: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8')
  const kb = (field: string): number => Number(new RegExp(`${field}:\\s+(\\d+) kB`).exec(status)?.[1] ?? 0) / 1024
  return { rss: kb('VmRSS'), anon: kb('RssAnon') }
}
