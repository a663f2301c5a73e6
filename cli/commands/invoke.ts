import { readFileSync, existsSync } from 'node:fs'
import { Option, type Command } from 'commander'
import { ApiError, type InvokeRequest, type InvokeResponse } from '../client.js'
import { UserError } from '../errors.js'
import { parseDuration } from '../../protocol/units.js'
import { clientFor, globals, resolvePeer } from '../context.js'
import { ms, printJson, shortId } from '../output.js'

const collect = (value: string, previous: string[] = []): string[] => [...previous, value]

/** The agent's limit on a call's input (and output). */
const MAX_INPUT_BYTES = 6 * 1024 * 1024

interface InvokeOptions {
  param?: string[]
  paramsFile?: string
  data?: string
  near?: boolean
  local?: boolean
  peer?: string
  policy?: string
  timeout?: string
  explain?: boolean
  async?: boolean
}

/** -p key:value → params; a value that parses as JSON (number, bool, …) keeps its type. */
export function parseParams (pairs: string[]): Record<string, unknown> {
  const params: Record<string, unknown> = {}
  for (const pair of pairs) {
    const i = pair.indexOf(':')
    if (i <= 0) throw new UserError(`bad -p '${pair}': expected key:value`)
    const raw = pair.slice(i + 1)
    let value: unknown = raw
    try { value = JSON.parse(raw) } catch { /* a plain string */ }
    params[pair.slice(0, i)] = value
  }
  return params
}

function readParamsFile (file: string): Record<string, unknown> {
  if (!existsSync(file)) throw new UserError(`no such params file: ${file}`)
  let value: unknown
  try {
    value = JSON.parse(readFileSync(file, 'utf8'))
  } catch (err) {
    throw new UserError(`params file ${file} is not valid JSON: ${(err as Error).message}`)
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) throw new UserError(`params file ${file} must hold a JSON object`)
  return value as Record<string, unknown>
}

function readData (spec: string): Uint8Array {
  if (spec === '-') return readFileSync(0)
  if (spec.startsWith('@')) {
    const file = spec.slice(1)
    if (!existsSync(file)) throw new UserError(`no such data file: ${file}`)
    return readFileSync(file)
  }
  return Buffer.from(spec)
}

export function summary (res: InvokeResponse): string {
  const t = res.timings
  const where = res.local ? `here (${shortId(res.ranOn)})` : `peer ${shortId(res.ranOn)}`
  const tries = res.attempts.length > 1 ? `, after ${res.attempts.length - 1} refused: ${res.attempts.slice(0, -1).map(a => `${shortId(a.peerId)} ${a.outcome}`).join(', ')}` : ''
  const start = res.warm ? 'warm' : t.initMs !== undefined ? `cold (started in ${ms(t.initMs)})` : 'cold'
  return `ran ${res.function.name} v${res.function.version} on ${where}, ${start}, policy ${res.policy}${tries}; ` +
    `queue ${ms(t.queueMs)}, fetch ${ms(t.fetchMs)}, run ${ms(t.runMs)}, network ${ms(t.networkMs)}, total ${ms(t.totalMs)}`
}

export function registerInvokeCommand (program: Command): void {
  program.command('invoke')
    .description('run function NAME and print its output (where it ran goes to stderr)')
    .argument('<name>', 'function name, or NAME@VERSION for an older version')
    .option('-p, --param <key:value>', 'a parameter (repeatable); the function gets them as JSON on stdin', collect)
    .option('--params-file <file>', 'parameters from a JSON file')
    .option('--data <@file|-|text>', 'raw input instead of params: @file, - for stdin, or literal text')
    .addOption(new Option('--near', 'run on the nearest place (lowest RTT) that has the function and a free slot').conflicts(['local', 'peer', 'policy']))
    .addOption(new Option('--local', 'run on this agent only').conflicts(['peer', 'policy']))
    .addOption(new Option('--peer <id>', 'run on this peer only').conflicts(['policy']))
    .option('--policy <name>', 'placement policy: local-first (default), near, least-loaded, p2c (power of two choices), warm-affinity, weighted (random, in proportion to 1 / expected latency), local, peer')
    .option('--timeout <duration>', 'overall deadline, e.g. 10s (default 30s)')
    .addOption(new Option('--explain', 'show the candidates and why each was chosen or skipped').conflicts(['async']))
    .option('--async', 'hand the call to the agent to run in the background: prints its id for `edge poll ID`')
    .action(async (name: string, opts: InvokeOptions, cmd: Command) => {
      if (opts.data !== undefined && (opts.param !== undefined || opts.paramsFile !== undefined)) throw new UserError('use either --data or params (-p / --params-file), not both')
      const request: InvokeRequest = {}
      if (opts.data !== undefined) request.input = readData(opts.data)
      else if (opts.param !== undefined || opts.paramsFile !== undefined) {
        request.params = { ...(opts.paramsFile !== undefined ? readParamsFile(opts.paramsFile) : {}), ...parseParams(opts.param ?? []) }
      }
      if (opts.near === true) request.policy = 'near'
      else if (opts.local === true) request.policy = 'local'
      else if (opts.peer !== undefined) request.peer = await resolvePeer(clientFor(cmd), opts.peer)
      else if (opts.policy !== undefined) request.policy = opts.policy
      const size = request.input?.byteLength ?? Buffer.byteLength(JSON.stringify(request.params ?? {}))
      if (size > MAX_INPUT_BYTES) throw new UserError(`input of ${size} bytes is over the ${MAX_INPUT_BYTES / 1048576} MiB limit of one call`)
      if (opts.timeout !== undefined) request.timeoutMs = parseDuration(opts.timeout)
      if (opts.explain === true) request.explain = true
      const json = globals(cmd).json === true
      if (opts.async === true) {
        const accepted = await clientFor(cmd).invokeAsync(name, request)
        if (json) printJson(accepted)
        else {
          process.stdout.write(`${accepted.id}\n`)
          process.stderr.write(`accepted ${accepted.target} as ${accepted.id}: 'edge poll ${accepted.id}' for its result\n`)
        }
        return
      }
      let res
      try {
        res = await clientFor(cmd).invoke(name, request)
      } catch (err) {
        if (err instanceof ApiError && !json) printStderr(err.stderr)
        throw err
      }
      printResult(res, json)
    })
}

/** A function's stderr, as it printed it, before the one-line error. */
export function printStderr (stderr: string | undefined): void {
  if (stderr !== undefined && stderr !== '') process.stderr.write(stderr.endsWith('\n') ? stderr : `${stderr}\n`)
}

/** A call's output on stdout; where and how it ran on stderr (or everything as JSON). */
export function printResult (res: InvokeResponse & { outputBytes: Uint8Array }, json: boolean): void {
  if (json) {
    const { outputBytes, ...rest } = res
    printJson({ ...rest, outputText: Buffer.from(outputBytes).toString('utf8') })
    return
  }
  process.stdout.write(res.outputBytes)
  // On a terminal, output without a final newline would run into the next line (the summary, the
  // prompt); piped, the bytes stay exactly what the function wrote.
  const last = res.outputBytes.at(-1)
  if (process.stdout.isTTY && last !== undefined && last !== 0x0a) process.stdout.write('\n')
  if (res.ranking !== undefined) {
    for (const c of res.ranking.candidates) process.stderr.write(`candidate ${c.local ? 'here' : shortId(c.peerId)}: ${c.reason}\n`)
    for (const s of res.ranking.skipped) process.stderr.write(`skipped ${shortId(s.peerId)}: ${s.reason}\n`)
  }
  process.stderr.write(summary(res) + '\n')
}
