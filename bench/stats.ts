/** The p-quantile (0…1) of samples sorted ascending, by the nearest rank below. */
export function pct (sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))] ?? NaN
}

/** Sorted ascending, in a copy. */
export function sorted (samples: number[]): number[] {
  return [...samples].sort((a, b) => a - b)
}
