import { inspect } from 'node:util'
import { enable, logger as debugLogger } from '@libp2p/logger'

/**
 * The agent's log, on stderr: what it does at info (start, peers joining and leaving, deploys,
 * deletes, replicas, failed calls, refused peers), warnings and errors always (with their
 * causes), and at debug the libp2p-style debug lines of every part. Text by default — one line
 * each; under systemd (JOURNAL_STREAM set) with the kernel-style priority prefix journald reads
 * and no timestamp, which journald adds — or JSON lines (`--log-format json`).
 *
 * `logger(name)` is a drop-in for @libp2p/logger's: calling it logs at debug, so the parts keep
 * their debug lines and DEBUG=edge:* still shows them; `.info`, `.warn` and `.error` go through here.
 */

export const LOG_LEVELS = ['error', 'warn', 'info', 'debug'] as const
export type LogLevel = typeof LOG_LEVELS[number]
export const LOG_FORMATS = ['text', 'json'] as const
export type LogFormat = typeof LOG_FORMATS[number]

const RANK: Record<LogLevel, number> = { error: 0, warn: 1, info: 2, debug: 3 }
/** syslog priorities, as `<N>` prefixes that journald takes from a service's stderr. */
const PRIORITY: Record<LogLevel, number> = { error: 3, warn: 4, info: 6, debug: 7 }

const settings: { level: LogLevel, format: LogFormat, journald: boolean, write: (line: string) => void } = {
  level: 'info',
  format: 'text',
  journald: process.env.JOURNAL_STREAM !== undefined,
  write: (line) => { process.stderr.write(line) }
}

export function configureLogs (options: { level?: LogLevel, format?: LogFormat, write?: (line: string) => void }): void {
  if (options.level !== undefined) settings.level = options.level
  if (options.format !== undefined) settings.format = options.format
  if (options.write !== undefined) settings.write = options.write
  // Debug lines of every part of the agent (and only of it: libp2p's own stay behind DEBUG).
  if (settings.level === 'debug') enable(['edge:*', process.env.DEBUG].filter(Boolean).join(','))
}

export interface Log {
  (format: string, ...args: unknown[]): void
  error: (format: string, ...args: unknown[]) => void
  warn: (format: string, ...args: unknown[]) => void
  info: (format: string, ...args: unknown[]) => void
  trace: (format: string, ...args: unknown[]) => void
  enabled: boolean
}

export function logger (name: string): Log {
  const debug = debugLogger(name)
  const component = name.replace(/^edge:(agent:)?/, '')
  const log = ((format: string, ...args: unknown[]) => { debug(format, ...args) }) as Log
  log.error = (format, ...args) => { write('error', component, format, args) }
  log.warn = (format, ...args) => { write('warn', component, format, args) }
  log.info = (format, ...args) => { write('info', component, format, args) }
  log.trace = debug.trace
  Object.defineProperty(log, 'enabled', { get: () => debug.enabled })
  return log
}

function write (level: LogLevel, component: string, format: string, args: unknown[]): void {
  if (RANK[level] > RANK[settings.level]) return
  const { message, errors } = render(format, args)
  let line: string
  if (settings.format === 'json') {
    const err = errors[0]
    line = JSON.stringify({
      time: new Date().toISOString(),
      level,
      component,
      msg: message,
      ...(err !== undefined ? { err: { name: err.name, message: err.message, ...(causeOf(err) !== undefined ? { cause: causeOf(err) } : {}), stack: err.stack } } : {})
    })
  } else {
    const text = `${level.padEnd(5)} ${component}: ${message}`
    line = settings.journald ? `<${PRIORITY[level]}>${text}` : `${new Date().toISOString()} ${text}`
  }
  settings.write(line + '\n')
  // Errors keep their stack in text too: a line for the message, the stack indented below it.
  if (settings.format === 'text' && level === 'error') {
    for (const err of errors) {
      if (err.stack !== undefined && !isUserMistake(err)) settings.write(err.stack.split('\n').slice(1).map(l => `    ${l.trim()}`).join('\n') + '\n')
    }
  }
}

/** Errors that say all there is in their message (a wire error's code, a system call's errno): no stack. */
function isUserMistake (err: Error): boolean {
  return typeof (err as { code?: unknown }).code === 'string'
}

function causeOf (err: Error): string | undefined {
  const cause = err.cause
  if (cause === undefined || cause === null) return undefined
  return cause instanceof Error ? cause.message : String(cause)
}

/** An error as one line: its message, and its cause's. */
function errorText (err: Error): string {
  const cause = causeOf(err)
  return cause !== undefined && !err.message.includes(cause) ? `${err.message} (cause: ${cause})` : err.message
}

/** printf-style formatting with @libp2p/logger's specifiers (%s %d %i %j %o %O, and %e %p %a %b %c %t %k as text). */
function render (format: string, args: unknown[]): { message: string, errors: Error[] } {
  const errors: Error[] = []
  let i = 0
  const message = format.replace(/%([sdifjoOepabctk%])/g, (whole, spec: string) => {
    if (spec === '%') return '%'
    if (i >= args.length) return whole
    const arg = args[i++]
    if (arg instanceof Error) {
      errors.push(arg)
      return errorText(arg)
    }
    switch (spec) {
      case 'd': case 'i': case 'f': return String(Number(arg))
      case 'j': case 'o': case 'O': return inspect(arg, { breakLength: Infinity, depth: 4 })
      default: return String(arg)
    }
  })
  const rest = args.slice(i).map(a => {
    if (a instanceof Error) {
      errors.push(a)
      return errorText(a)
    }
    return typeof a === 'string' ? a : inspect(a, { breakLength: Infinity, depth: 4 })
  })
  return { message: [message, ...rest].join(' '), errors }
}

/**
 * Lets a line through once per `ms` for each key, and counts the ones held back: a flood of
 * refused calls is one line every so often ("… and 250 more"), not one line each.
 */
export class Throttle {
  readonly #ms: number
  readonly #last = new Map<string, { at: number, held: number }>()

  constructor (ms: number) {
    this.#ms = ms
  }

  /** Undefined: hold this one back. Otherwise the number held back since the last let through. */
  allow (key: string, now = Date.now()): number | undefined {
    const seen = this.#last.get(key)
    if (seen !== undefined && now - seen.at < this.#ms) {
      seen.held++
      return undefined
    }
    if (this.#last.size >= 1024) this.#last.clear()
    this.#last.set(key, { at: now, held: 0 })
    return seen?.held ?? 0
  }
}

/** " (and N more like it)" when lines were held back, for the line let through. */
export function heldBack (n: number): string {
  return n > 0 ? ` (and ${n} more like it since the last such line)` : ''
}
