import { UserError } from './errors.js'

/** Plain-text tables and units for the CLI. */
export function table (headers: string[], rows: string[][]): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map(r => (r[i] ?? '').length)))
  const line = (cells: string[]): string => cells.map((c, i) => c.padEnd(widths[i] ?? 0)).join('  ').trimEnd()
  return [line(headers), ...rows.map(line)].join('\n')
}

export function bytes (n: number | undefined): string {
  if (n === undefined) return '-'
  if (n < 1024) return `${n} B`
  const units = ['KiB', 'MiB', 'GiB', 'TiB']
  let v = n / 1024
  let i = 0
  while (v >= 1024 && i < units.length - 1) { v /= 1024; i++ }
  return `${v.toFixed(v < 10 ? 1 : 0)} ${units[i] ?? ''}`
}

export function ms (n: number | undefined): string {
  if (n === undefined) return '-'
  if (n < 10) return `${n.toFixed(2)} ms`
  if (n < 10_000) return `${n.toFixed(0)} ms`
  return `${(n / 1000).toFixed(1)} s`
}

export function shortId (peerId: string): string {
  return peerId.length > 16 ? `${peerId.slice(0, 6)}…${peerId.slice(-6)}` : peerId
}

const FULL_PEER_ID = /^(12D3Koo|Qm)[1-9A-HJ-NP-Za-km-z]{40,}$/

/** Whether `text` looks like a whole peer id (base58, as libp2p prints Ed25519 and RSA ids). */
export function isWholePeerId (text: string): boolean {
  return FULL_PEER_ID.test(text)
}

/**
 * Which of `known` (peer ids) `text` names: the whole id, a unique prefix of it, or the short form
 * tables print (`12D3Ko…pCW1Bt`, or with `...`). Throws a one-line error when none or several do.
 */
export function matchPeer (text: string, known: string[], listedBy = 'edge peers'): string {
  if (isWholePeerId(text)) return text
  const short = /^(.+?)(?:…|\.\.\.)(.+)$/.exec(text)
  const matches = [...new Set(known)].filter(id => short !== null ? id.startsWith(short[1] as string) && id.endsWith(short[2] as string) : id.startsWith(text))
  if (matches.length === 1) return matches[0] as string
  if (matches.length > 1) throw new UserError(`'${text}' matches ${matches.length} peers (${matches.map(shortId).join(', ')}): give more of the id`)
  throw new UserError(`no peer known matches '${text}': '${listedBy}' lists them`)
}

export function printJson (value: unknown): void {
  process.stdout.write(JSON.stringify(value, null, 2) + '\n')
}
