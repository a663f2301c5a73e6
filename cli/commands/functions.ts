import { readFileSync, existsSync, statSync } from 'node:fs'
import type { Command } from 'commander'
import { UserError } from '../errors.js'
import { clientFor, globals } from '../context.js'
import type { FunctionInfo } from '../client.js'
import { bytes, ms, printJson, shortId, table } from '../output.js'

/** "3", or "3 (also 2, 1)" when older versions are kept. */
function versions (f: FunctionInfo): string {
  const older = (f.versions ?? []).map(v => v.version).filter(v => v !== f.version)
  return older.length === 0 ? String(f.version) : `${f.version} (also ${older.join(', ')})`
}

/** deploy, list, delete */
export function registerFunctionCommands (program: Command): void {
  program.command('deploy')
    .description('deploy a WASI (preview1) module as function NAME')
    .argument('<name>', 'function name (a-z, 0-9, . _ -)')
    .argument('<file>', 'path to the .wasm module')
    .option('--memory <size>', 'memory limit, e.g. 64MiB (default 64MiB)')
    .option('--timeout <duration>', 'time limit per call, e.g. 5s (default 5s)')
    .action(async (name: string, file: string, opts: { memory?: string, timeout?: string }, cmd: Command) => {
      if (!existsSync(file) || !statSync(file).isFile()) throw new UserError(`no such file: ${file}`)
      const code = readFileSync(file)
      // Large artifacts show their upload, then the agent's work (compile, sign, DHT), on a terminal.
      const show = process.stderr.isTTY && code.byteLength >= 1024 * 1024 && globals(cmd).json !== true
      const onProgress = show
        ? (sent: number, total: number) => {
            process.stderr.write(`\rdeploying ${name}: ${bytes(sent)} of ${bytes(total)} (${Math.floor(sent * 100 / total)}%)${sent === total ? ', compiling, signing, publishing…' : ''}   `)
          }
        : undefined
      let res
      try {
        res = await clientFor(cmd).deploy(name, code, { ...opts, ...(onProgress !== undefined ? { onProgress } : {}) })
      } finally {
        if (show) process.stderr.write('\n')
      }
      if (globals(cmd).json === true) { printJson(res); return }
      const f = res.function
      process.stdout.write(`deployed ${f.name} v${f.version} (${bytes(f.size)}, sha256 ${f.sha256.slice(0, 12)}, memory ${bytes(f.memoryBytes)}, timeout ${ms(f.timeoutMs)}) on ${shortId(res.holder)}\n`)
      if (!res.manifestInDht) process.stdout.write('signed manifest kept on this agent: no peer took it into the DHT yet (it is put again when peers appear)\n')
    })

  program.command('inspect')
    .description('the signed manifest of function NAME, as the DHT has it')
    .argument('<name>', 'NAME (its newest version), or NAME@VERSION')
    .action(async (name: string, _opts: unknown, cmd: Command) => {
      const m = await clientFor(cmd).manifest(name)
      if (globals(cmd).json === true) { printJson(m); return }
      const lines = [
        `name       ${m.name}`,
        `version    ${m.version}${m.type === 'tombstone' ? ' (deleted)' : ''}`,
        `signer     ${m.signer} (${m.trusted ? 'trusted' : 'NOT trusted by this agent'})`,
        `deployed   ${new Date(m.deployedAt).toISOString()}`,
        `source     ${m.source === 'dht' ? 'DHT' : 'this agent only (not in the DHT)'}`,
        ...(m.type === 'manifest'
          ? [`runtime    ${m.runtime ?? '-'}`, `size       ${bytes(m.size)} in ${m.chunks?.length ?? 0} chunks`, `limits     memory ${bytes(m.limits?.memoryBytes)}, timeout ${ms(m.limits?.timeoutMs)}`, `sha256     ${m.sha256 ?? '-'}`]
          : [])
      ]
      process.stdout.write(lines.join('\n') + '\n')
    })

  program.command('list')
    .alias('ls')
    .description('functions known across the swarm')
    .action(async (_opts: unknown, cmd: Command) => {
      const fns = await clientFor(cmd).list()
      if (globals(cmd).json === true) { printJson(fns); return }
      if (fns.length === 0) { process.stdout.write('no functions deployed (edge deploy NAME file.wasm)\n'); return }
      process.stdout.write(table(['NAME', 'VERSION', 'RUNTIME', 'SIZE', 'MEMORY', 'TIMEOUT', 'HOLDERS', 'SHA256'],
        fns.map(f => [f.name, versions(f), f.runtime, bytes(f.size), bytes(f.memoryBytes), ms(f.timeoutMs), `${f.holders.length}${f.local ? ' (here)' : ''}`, f.sha256.slice(0, 12)])) + '\n')
    })

  program.command('delete')
    .alias('rm')
    .description('delete function NAME across the swarm, every version')
    .argument('<name>')
    .action(async (name: string, _opts: unknown, cmd: Command) => {
      const res = await clientFor(cmd).delete(name)
      if (globals(cmd).json === true) { printJson(res); return }
      process.stdout.write(`deleted ${res.name} (versions up to ${res.version})\n`)
    })
}
