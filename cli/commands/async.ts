import type { Command } from 'commander'
import { parseDuration } from '../../protocol/units.js'
import type { AsyncRequest, CallLogEntry } from '../client.js'
import { clientFor, globals } from '../context.js'
import { UserError } from '../errors.js'
import { ms, printJson, shortId, table } from '../output.js'
import { printResult, printStderr } from './invoke.js'

/** `edge poll`'s exit code for a call that has not finished yet (sysexits' EX_TEMPFAIL). */
export const EXIT_PENDING = 75

/** One poll answers after at most this long; longer waits poll again. */
const POLL_STEP_MS = 55_000

function age (from: number, to = Date.now()): string {
  return ms(Math.max(0, to - from))
}

function state (r: AsyncRequest): string {
  switch (r.state) {
    case 'queued': return r.waiting !== undefined ? `queued, waiting for a free place (${r.waiting})` : `queued for ${age(r.submittedAt)}`
    case 'running': return `running for ${age(r.startedAt ?? r.submittedAt)}`
    case 'done': return `done in ${age(r.submittedAt, r.finishedAt)}`
    case 'failed': return `failed: ${r.error?.message ?? 'unknown error'}`
  }
}

export function registerAsyncCommands (program: Command): void {
  program.command('poll')
    .description('the state of an async call (edge invoke --async), and its output once done; exits 75 while it has not finished')
    .argument('<id>', 'the id edge invoke --async printed')
    .option('--wait <duration>', 'wait up to this long for the call to finish, e.g. 30s')
    .action(async (id: string, opts: { wait?: string }, cmd: Command) => {
      const client = clientFor(cmd)
      const until = Date.now() + (opts.wait !== undefined ? parseDuration(opts.wait) : 0)
      let r = await client.poll(id)
      while ((r.state === 'queued' || r.state === 'running') && Date.now() < until) {
        r = await client.poll(id, Math.min(POLL_STEP_MS, until - Date.now()))
      }
      const json = globals(cmd).json === true
      if (json) printJson(r)
      if (r.state === 'done' && r.result !== undefined) {
        if (!json) printResult({ ...r.result, outputBytes: Buffer.from(r.result.output, 'base64') }, false)
        return
      }
      if (r.state === 'failed') {
        if (json) {
          process.exitCode = 1
          return
        }
        printStderr(r.error?.stderr)
        throw new UserError(`async call ${r.id} to ${r.target} ${state(r)}`)
      }
      if (!json) process.stderr.write(`${r.id} (${r.target}): ${state(r)}\n`)
      process.exitCode = EXIT_PENDING
    })

  program.command('logs')
    .description('recent calls that ran on this agent (whoever asked), with what each function printed on stderr')
    .argument('[name]', 'only this function')
    .option('-n, --lines <n>', 'the newest N calls (default 20, at most 1000)', '20')
    .option('-f, --follow', 'then keep printing calls as they end, until Ctrl-C')
    .action(async (name: string | undefined, opts: { lines: string, follow?: boolean }, cmd: Command) => {
      const limit = Number(opts.lines)
      if (!Number.isInteger(limit) || limit < 1 || limit > 1000) throw new UserError(`bad -n '${opts.lines}': a number from 1 to 1000`)
      const json = globals(cmd).json === true
      const print = (e: CallLogEntry & { dropped?: number }): void => {
        if (json) {
          process.stdout.write(JSON.stringify(e) + '\n')
          return
        }
        if (e.dropped !== undefined) process.stdout.write(`… ${e.dropped} calls not shown (this terminal read too slowly)\n`)
        const from = e.from === 'local' ? 'asked here' : `for peer ${shortId(e.from)}`
        process.stdout.write(`${new Date(e.at).toISOString()}  ${e.name}@${e.version}  ${e.outcome === 'ok' ? 'ok' : `failed: ${e.error ?? ''}`}  ${ms(e.runMs)}${e.warm ? ' warm' : ''}  ${from}\n`)
        for (const line of e.stderr.replace(/\n$/, '').split('\n').filter(l => l !== '')) process.stdout.write(`    ${line}\n`)
      }
      if (opts.follow === true) {
        // JSON lines when following (one object per call), as a stream has no closing bracket.
        const stop = new AbortController()
        process.once('SIGINT', () => { stop.abort() })
        await clientFor(cmd).followLogs({ ...(name !== undefined ? { name } : {}), limit, signal: stop.signal }, print)
        return
      }
      const entries = await clientFor(cmd).logs({ ...(name !== undefined ? { name } : {}), limit })
      if (json) {
        printJson(entries)
        return
      }
      if (entries.length === 0) {
        process.stdout.write(`no calls of ${name ?? 'any function'} ran here yet\n`)
        return
      }
      for (const e of entries) print(e)
    })

  program.command('requests')
    .description('async calls this agent has, newest first (finished ones are kept for its results TTL)')
    .action(async (_opts: unknown, cmd: Command) => {
      const requests = await clientFor(cmd).requests()
      if (globals(cmd).json === true) {
        printJson(requests)
        return
      }
      if (requests.length === 0) {
        process.stdout.write('no async calls\n')
        return
      }
      process.stdout.write(table(['ID', 'FUNCTION', 'STATE', 'SUBMITTED'], requests.map(r => [
        r.id, r.target, r.state === 'failed' ? `failed (${r.error?.code ?? '?'})` : r.state === 'done' ? `done in ${age(r.submittedAt, r.finishedAt)}` : r.state, `${age(r.submittedAt)} ago`
      ])) + '\n')
    })
}
