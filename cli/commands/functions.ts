import { readFileSync, existsSync, statSync } from 'node:fs'
import type { Command } from 'commander'
import { UserError } from '../errors.js'
import { clientFor, globals } from '../context.js'
import type { FunctionInfo } from '../client.js'

/** Signing loads libp2p's crypto: only for the commands that need it. */
const signing = async (): Promise<typeof import('../deployer-key.js')> => await import('../deployer-key.js')
import { bytes, ms, printJson, shortId, table } from '../output.js'

/** edge key create/show: deployer keys. */
export function registerKeyCommands (program: Command): void {
  const key = program.command('key').description('deployer keys, to sign deploys with a key of your own (edge deploy --key)')
  key.command('create')
    .description('make a new Ed25519 deployer key in FILE and print its id')
    .argument('<file>')
    .action(async (file: string, _opts: unknown, cmd: Command) => {
      const id = await (await signing()).createDeployerKey(file)
      if (globals(cmd).json === true) { printJson({ file, id }); return }
      process.stdout.write(`deployer key written to ${file} (keep it private); its id is\n${id}\n` +
        `run 'edge-agent trust add ${id}' on every agent that should run what it signs, then restart them\n`)
    })
  key.command('show')
    .description('print the id of the deployer key in FILE')
    .argument('<file>')
    .action(async (file: string, _opts: unknown, cmd: Command) => {
      const { keyId, loadDeployerKey } = await signing()
      const id = await keyId(await loadDeployerKey(file))
      if (globals(cmd).json === true) { printJson({ file, id }); return }
      process.stdout.write(`${id}\n`)
    })
}

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
    .option('--key <file>', 'sign the manifest with this deployer key (edge key create) instead of the agent\'s own')
    .action(async (name: string, file: string, opts: { memory?: string, timeout?: string, key?: string }, cmd: Command) => {
      if (!existsSync(file) || !statSync(file).isFile()) throw new UserError(`no such file: ${file}`)
      const code = readFileSync(file)
      const client = clientFor(cmd)
      let record: Uint8Array | undefined
      if (opts.key !== undefined) {
        const { loadDeployerKey, signManifest } = await signing()
        const key = await loadDeployerKey(opts.key)
        record = await signManifest(key, name, await client.highestVersion(name) + 1, code, opts)
      }
      // Large artifacts show their upload, then the agent's work (compile, sign, DHT), on a terminal.
      const show = process.stderr.isTTY && code.byteLength >= 1024 * 1024 && globals(cmd).json !== true
      const onProgress = show
        ? (sent: number, total: number) => {
            process.stderr.write(`\rdeploying ${name}: ${bytes(sent)} of ${bytes(total)} (${Math.floor(sent * 100 / total)}%)${sent === total ? ', compiling, signing, publishing…' : ''}   `)
          }
        : undefined
      let res
      try {
        res = await client.deploy(name, code, {
          ...(opts.memory !== undefined ? { memory: opts.memory } : {}),
          ...(opts.timeout !== undefined ? { timeout: opts.timeout } : {}),
          ...(record !== undefined ? { record } : {}),
          ...(onProgress !== undefined ? { onProgress } : {})
        })
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
    .option('--key <file>', 'sign the delete with this deployer key instead of the agent\'s own')
    .action(async (name: string, opts: { key?: string }, cmd: Command) => {
      const client = clientFor(cmd)
      let record: Uint8Array | undefined
      if (opts.key !== undefined) {
        const { loadDeployerKey, signTombstone } = await signing()
        record = await signTombstone(await loadDeployerKey(opts.key), name, await client.highestVersion(name))
      }
      const res = await client.delete(name, record === undefined ? {} : { record })
      if (globals(cmd).json === true) { printJson(res); return }
      process.stdout.write(`deleted ${res.name} (versions up to ${res.version})\n`)
    })
}
