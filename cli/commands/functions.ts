import { readFileSync, readdirSync, existsSync, statSync } from 'node:fs'
import { InvalidArgumentError, Option, type Command } from 'commander'
import { parseDuration } from '../../protocol/units.js'
import type { ContainerOptions, RuntimeKind } from '../../protocol/messages.js'
import { UserError } from '../errors.js'
import { clientFor, globals } from '../context.js'
import type { DeploySettings, FunctionInfo } from '../client.js'

import { bytes, ms, printJson, shortId, table } from '../output.js'

/** Signing loads libp2p's crypto, packing tar: each only for the commands that need it (a CLI that starts fast). */
const signing = async (): Promise<typeof import('../deployer-key.js')> => await import('../deployer-key.js')
const artifacts = async (): Promise<typeof import('../../protocol/artifact.js')> => await import('../../protocol/artifact.js')

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

const collect = (value: string, previous: string[] = []): string[] => [...previous, value]

function positiveInt (text: string): number {
  const n = Number(text)
  if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError('expected a whole number of at least 1')
  return n
}

function positiveNumber (text: string): number {
  const n = Number(text)
  if (!Number.isFinite(n) || n <= 0) throw new InvalidArgumentError('expected a positive number')
  return n
}

/** `edge deploy`'s flags: the container settings as the manifest has them, but the keepalive as text (e.g. 30s). */
interface DeployFlags extends Omit<ContainerOptions, 'keepaliveMs'> {
  runtime?: RuntimeKind
  entry?: string
  memory?: string
  timeout?: string
  env?: string[]
  keepalive?: string
  key?: string
}

/** The runtime a path's contents suggest, or a request to say it. */
export function guessRuntime (path: string): RuntimeKind {
  const st = statSync(path)
  const say = `: give --runtime wasm, node, python or binary`
  if (st.isFile()) {
    if (path.endsWith('.wasm')) return 'wasm'
    if (/\.(?:js|mjs|cjs)$/.test(path)) return 'node'
    if (path.endsWith('.py')) return 'python'
    if ((st.mode & 0o111) !== 0) return 'binary'
    throw new UserError(`cannot tell how ${path} runs${say}`)
  }
  const names = new Set(readdirSync(path))
  const node = ['package.json', 'index.js', 'index.mjs', 'index.cjs'].some(n => names.has(n))
  const python = ['handler.py', 'main.py'].some(n => names.has(n))
  const binary = ['handler', 'main'].some(n => names.has(n))
  if ([node, python, binary].filter(Boolean).length === 1) return node ? 'node' : python ? 'python' : 'binary'
  throw new UserError(`cannot tell how the function in ${path} runs${say}`)
}

function readWasm (path: string): Uint8Array {
  if (!statSync(path).isFile()) throw new UserError(`${path} is a directory: a wasm function is one .wasm file`)
  return readFileSync(path)
}

/** The deploy's settings, checked here so that a typo fails before anything is uploaded. */
async function deploySettings (runtime: RuntimeKind, opts: DeployFlags): Promise<DeploySettings> {
  const container: ContainerOptions = {}
  if (opts.keepalive !== undefined) container.keepaliveMs = parseDuration(opts.keepalive)
  if (opts.concurrency !== undefined) container.concurrency = opts.concurrency
  if (opts.maxContainers !== undefined) container.maxContainers = opts.maxContainers
  if (opts.singleUse === true) container.singleUse = true
  if (opts.network === true) container.network = true
  if (opts.cpus !== undefined) container.cpus = opts.cpus
  if (opts.pids !== undefined) container.pids = opts.pids
  const env: Record<string, string> = {}
  for (const pair of opts.env ?? []) {
    const eq = pair.indexOf('=')
    if (eq <= 0) throw new UserError(`bad --env '${pair}': expected NAME=value`)
    env[pair.slice(0, eq)] = pair.slice(eq + 1)
  }
  const inContainer = runtime !== 'wasm'
  if (!inContainer && (Object.keys(container).length > 0 || Object.keys(env).length > 0 || opts.entry !== undefined)) {
    throw new UserError('--entry, --env, --keepalive, --concurrency, --max-containers, --single-use, --network, --cpus and --pids are for node, python and binary functions')
  }
  const { validateContainerOptions, validateEnv } = await import('../../protocol/validate.js')
  try {
    if (Object.keys(env).length > 0) validateEnv(env)
    if (Object.keys(container).length > 0) validateContainerOptions(container)
  } catch (err) {
    throw new UserError((err as Error).message)
  }
  return {
    runtime,
    ...(opts.memory !== undefined ? { memory: opts.memory } : {}),
    ...(opts.timeout !== undefined ? { timeout: opts.timeout } : {}),
    ...(Object.keys(env).length > 0 ? { env } : {}),
    ...(Object.keys(container).length > 0 ? { container } : {})
  }
}

function containerText (c: ContainerOptions): string {
  return [
    c.keepaliveMs !== undefined ? `keepalive ${ms(c.keepaliveMs)}` : '',
    c.concurrency !== undefined ? `${c.concurrency} calls per container` : '',
    c.maxContainers !== undefined ? `at most ${c.maxContainers} containers` : '',
    c.singleUse === true ? 'single-use' : '',
    c.network === true ? 'network' : '',
    c.cpus !== undefined ? `${c.cpus} cpus` : '',
    c.pids !== undefined ? `${c.pids} processes` : ''
  ].filter(Boolean).join(', ')
}

/** "3", or "3 (also 2, 1)" when older versions are kept. */
function versions (f: FunctionInfo): string {
  const older = (f.versions ?? []).map(v => v.version).filter(v => v !== f.version)
  return older.length === 0 ? String(f.version) : `${f.version} (also ${older.join(', ')})`
}

/** deploy, list, delete */
export function registerFunctionCommands (program: Command): void {
  program.command('deploy')
    .description('deploy function NAME: a WASI module, or a node, python or binary function (a directory or one file) run in Docker')
    .argument('<name>', 'function name (a-z, 0-9, . _ -)')
    .argument('<path>', 'a .wasm module, or the function\'s directory or file')
    .addOption(new Option('--runtime <kind>', 'how it runs (default: from the path: .wasm, .js, .py, package.json, handler.py, an executable)').choices(['wasm', 'node', 'python', 'binary']))
    .option('--entry <file>', 'container functions: the file holding the handler (default: index.js or package.json\'s main; handler.py or main.py; handler or main)')
    .option('--memory <size>', 'memory limit, e.g. 64MiB (default 64MiB for wasm, 128MiB in containers)')
    .option('--timeout <duration>', 'time limit per call, e.g. 5s (default 5s)')
    .option('--env <k=v>', 'container functions: an environment variable (repeatable)', collect)
    .option('--keepalive <duration>', 'container functions: idle time before a warm container is removed (default: the agent\'s, 60s)')
    .option('--concurrency <n>', 'node functions: calls one container serves at once (default 1)', positiveInt)
    .option('--max-containers <n>', 'container functions: containers per agent at most (default: the agent\'s slots)', positiveInt)
    .option('--single-use', 'container functions: a fresh container for every call')
    .option('--network', 'container functions: give it network access (default: none at all)')
    .option('--cpus <n>', 'container functions: CPU share, e.g. 0.5 (default 1)', positiveNumber)
    .option('--pids <n>', 'container functions: processes and threads at most (default 64)', positiveInt)
    .option('--key <file>', 'sign the manifest with this deployer key (edge key create) instead of the agent\'s own')
    .action(async (name: string, path: string, opts: DeployFlags, cmd: Command) => {
      if (!existsSync(path)) throw new UserError(`no such file or directory: ${path}`)
      const runtime = opts.runtime ?? guessRuntime(path)
      const settings = await deploySettings(runtime, opts)
      const code = runtime === 'wasm' ? readWasm(path) : await (await artifacts()).packFunction(path).catch((err: Error) => { throw new UserError(err.message) })
      const client = clientFor(cmd)
      let record: Uint8Array | undefined
      if (opts.key !== undefined) {
        const { loadDeployerKey, signManifest } = await signing()
        const key = await loadDeployerKey(opts.key)
        const entry = runtime === 'wasm' ? '_start' : await (await artifacts()).artifactEntry(runtime, code, opts.entry).catch((err: Error) => { throw new UserError(err.message) })
        record = await signManifest(key, name, await client.highestVersion(name) + 1, code, { ...settings, entry })
      }
      // Large artifacts show their upload, then the agent's work (compile, sign, DHT), on a terminal.
      const show = process.stderr.isTTY && code.byteLength >= 1024 * 1024 && globals(cmd).json !== true
      const onProgress = show
        ? (sent: number, total: number) => {
            process.stderr.write(`\rdeploying ${name}: ${bytes(sent)} of ${bytes(total)} (${Math.floor(sent * 100 / total)}%)${sent === total ? ', preparing, signing, publishing…' : ''}   `)
          }
        : undefined
      let res
      try {
        res = await client.deploy(name, code, {
          ...settings,
          ...(opts.entry !== undefined ? { entry: opts.entry } : {}),
          ...(record !== undefined ? { record } : {}),
          ...(onProgress !== undefined ? { onProgress } : {})
        })
      } finally {
        if (show) process.stderr.write('\n')
      }
      if (globals(cmd).json === true) { printJson(res); return }
      const f = res.function
      const what = f.runtime === 'wasm' ? '' : `${f.runtime} (${f.entry ?? '?'}), `
      process.stdout.write(`deployed ${f.name} v${f.version} (${what}${bytes(f.size)}, sha256 ${f.sha256.slice(0, 12)}, memory ${bytes(f.memoryBytes)}, timeout ${ms(f.timeoutMs)}) on ${shortId(res.holder)}\n`)
      if (!res.shared) process.stdout.write('signed manifest kept on this agent: no peer has it yet (it is put in the DHT again when peers appear)\n')
    })

  program.command('prewarm')
    .description('start containers of a container function ahead of its calls, so that they run warm')
    .argument('<name>', 'NAME (its newest version), or NAME@VERSION')
    .option('--count <n>', 'containers to have ready (default 1)', positiveInt)
    .action(async (name: string, opts: { count?: number }, cmd: Command) => {
      const res = await clientFor(cmd).prewarm(name, opts.count ?? 1)
      if (globals(cmd).json === true) { printJson(res); return }
      process.stdout.write(`${res.name} v${res.version}: ${res.warm} warm container${res.warm === 1 ? '' : 's'} (${res.started} started now)\n`)
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
          ? [
              `runtime    ${m.runtime ?? '-'}`,
              ...(m.runtime !== 'wasm' ? [`entry      ${m.entry ?? '-'}`] : []),
              `size       ${bytes(m.size)} in ${m.chunks?.length ?? 0} chunks`,
              `limits     memory ${bytes(m.limits?.memoryBytes)}, timeout ${ms(m.limits?.timeoutMs)}`,
              ...(m.container !== undefined && Object.keys(m.container).length > 0 ? [`container  ${containerText(m.container)}`] : []),
              ...(m.env !== undefined && Object.keys(m.env).length > 0 ? [`env        ${Object.keys(m.env).join(', ')}`] : []),
              `sha256     ${m.sha256 ?? '-'}`
            ]
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
