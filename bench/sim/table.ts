/** Prints a table as the other benches do (bench/index.ts printTable): a title, headers, a rule, rows; numbers right-aligned. */
export function printTable (title: string, headers: string[], rows: string[][]): void {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map(r => (r[i] ?? '').length)))
  const line = (cells: string[]): string => cells.map((c, i) => i === 0 ? c.padEnd(widths[i] ?? 0) : c.padStart(widths[i] ?? 0)).join('  ')
  process.stdout.write(`\n${title}\n${line(headers)}\n${widths.map(w => '-'.repeat(w)).join('  ')}\n${rows.map(line).join('\n')}\n`)
}
