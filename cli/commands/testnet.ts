import { readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import type { Command } from 'commander'
import { AgentClient } from '../client.js'
import { UserError } from '../errors.js'
import { globals, loadTestnet, testnetModule } from '../context.js'
import { bytes, printJson, shortId, table } from '../output.js'
import { summary } from './invoke.js'
import { PACKAGE_ROOT } from '../main.js'
import type { Testnet } from '../../testnet/index.js'
import { isOurAgent } from '../../testnet/process.js'
import { parseBytes } from '../../protocol/units.js'

const EXAMPLES = fileURLToPath(new URL('examples/', PACKAGE_ROOT))

function load (): Testnet {
  const { Testnet, defaultTestnetHome } = testnetModule()
  const net = Testnet.load(defaultTestnetHome())
  if (net === undefined) throw new UserError(`no testnet in ${defaultTestnetHome()}: start one with 'edge testnet up --peers N'`)
  return net
}

function describe (net: Testnet): string {
  return table(['NODE', 'PEER', 'PID', 'STATE', 'CPU', 'MEM', 'API', 'LOG'], net.agents.map(a => [
    String(a.index), shortId(a.peerId), String(a.pid), isOurAgent(a.pid, a.dataDir) ? 'running' : 'stopped',
    a.caps?.cpu !== undefined ? String(a.caps.cpu) : '-', bytes(a.caps?.memoryBytes), a.api, a.logFile
  ]))
}

/**
 * A value per agent 1…`peers` from `--flag SPEC`: one value for all (`0.3`), values per agent
 * (`1:0.5,2:0.3`), or both (`0.3,1:1.0`: 0.3, but 1.0 for agent 1). Agents without one get undefined.
 */
export function parsePerAgent<T> (flag: string, spec: string, peers: number, parse: (text: string) => T): Array<T | undefined> {
  const fail = (why: string): never => { throw new UserError(`${flag} '${spec}': ${why}`) }
  let all: T | undefined
  const each = new Map<number, T>()
  for (const item of spec.split(',').map(s => s.trim())) {
    if (item === '') fail('an empty item; use e.g. 0.3 or 1:0.5,2:0.3')
    const colon = item.indexOf(':')
    if (colon < 0) {
      if (all !== undefined) fail('two values for every agent')
      all = parse(item)
      continue
    }
    const key = item.slice(0, colon).trim()
    const value = item.slice(colon + 1).trim()
    const k = Number(key)
    if (!/^\d+$/.test(key) || k < 1) fail(`'${key}' is not an agent number (1…${peers})`)
    if (k > peers) fail(`there is no agent ${k} (--peers ${peers})`)
    if (value === '') fail(`no value for agent ${k}; use e.g. ${k}:${flag === '--memory' ? '256MiB' : '0.5'}`)
    if (each.has(k)) fail(`two values for agent ${k}`)
    each.set(k, parse(value))
  }
  return Array.from({ length: peers }, (_v, i) => each.get(i + 1) ?? all)
}

/** A CPU cap as given to --cpu: a positive number of CPUs. */
export function parseCpu (text: string): number {
  const cpu = /^\d+(\.\d+)?$|^\.\d+$/.test(text) ? Number(text) : NaN
  if (!(cpu > 0)) throw new UserError(`--cpu '${text}': not a positive number of CPUs; use e.g. 0.3 or 1:0.5,2:0.3`)
  return cpu
}

/** A memory cap as given to --memory: a size (256MiB, 1GiB, bytes). */
export function parseMemory (text: string): number {
  try {
    return parseBytes(text)
  } catch {
    throw new UserError(`--memory '${text}': not a size; use e.g. 256MiB or 1:256MiB,2:1GiB`)
  }
}

const CGROUP_ERRORS = new Set(['CgroupPermissionError', 'CgroupUnavailableError', 'CgroupBusyError'])

/** Cgroup failures are the user's to act on (root, a mount, a leftover process): one line, exit 1. */
async function withCgroups<T> (run: () => Promise<T>): Promise<T> {
  try {
    return await run()
  } catch (err) {
    if (CGROUP_ERRORS.has((err as Error).name)) throw new UserError((err as Error).message, { cause: err })
    throw err
  }
}

function nodeIndex (net: Testnet, text: string): number {
  const k = Number(text)
  if (!Number.isInteger(k) || k < 1 || k > net.agents.length) throw new UserError(`node must be 1…${net.agents.length}`)
  return k
}

async function demo (net: Testnet): Promise<void> {
  const first = new AgentClient(net.agent(1).api)
  const other = new AgentClient(net.agent(Math.min(2, net.agents.length)).api)
  const code = readFileSync(`${EXAMPLES}primes/primes.wasm`)
  const dep = await first.deploy('primes', code, { timeout: '10s' })
  process.stdout.write(`\n$ edge --node 1 deploy primes examples/primes/primes.wasm\ndeployed primes v${dep.function.version} on node 1 (${shortId(dep.holder)})\n`)
  const nodeOf = (peerId: string): string => `node ${net.agents.find(a => a.peerId === peerId)?.index ?? '?'}`
  const k = Math.min(2, net.agents.length)
  process.stdout.write(`\n$ edge --node ${k} invoke primes -p n:100000 --near\n`)
  const res = await other.invoke('primes', { params: { n: 100000 }, policy: 'near' })
  process.stdout.write(Buffer.from(res.outputBytes).toString('utf8'))
  process.stdout.write(`${summary(res)}\n→ ran on ${nodeOf(res.ranOn)}\n`)
  const again = await other.invoke('primes', { params: { n: 1000 }, policy: 'near' })
  process.stdout.write(`\nagain: ${Buffer.from(again.outputBytes).toString('utf8').trim()} → ran on ${nodeOf(again.ranOn)} (${again.warm ? 'warm' : 'cold'}, total ${again.timings.totalMs.toFixed(2)} ms)\n`)
}

/**
 * Prints `up`'s progress on stderr: on a terminal, convergence updates one line in place;
 * elsewhere (a log) it prints a line at most every 5 s.
 */
function progressPrinter (): (message: string) => void {
  const tty = process.stderr.isTTY
  let inPlace = false
  let lastAt = 0
  return (m) => {
    if (m.startsWith('converging')) {
      if (tty) { process.stderr.write(`\r${m}\x1b[K`); inPlace = true; return }
      if (Date.now() - lastAt < 5000) return
      lastAt = Date.now()
      process.stderr.write(`${m}\n`)
      return
    }
    process.stderr.write(`${inPlace ? '\n' : ''}${m}\n`)
    inPlace = false
  }
}

export function registerTestnetCommands (program: Command): void {
  const testnet = program.command('testnet').description('a local swarm of agent processes on 127.0.0.1')
    .hook('preAction', async () => { await loadTestnet() })

  testnet.command('up')
    .description('start N agents, wait until each sees all the others')
    .requiredOption('--peers <n>', 'number of agents', (v) => Number(v))
    .option('--demo', 'deploy the example function and invoke it with --near from another agent')
    .option('--wasm-slots <n>', 'WASM slots per agent')
    .option('--docker-peers <n>', 'only agents 1…n run container functions (the others start with --no-docker), for mixed swarms', (v) => Number(v))
    .option('--cpu <spec>', 'cap each agent at this many CPUs, as a smaller device: 0.3, or per agent 1:0.5,2:0.3, or 0.3,1:1.0 (needs root: cgroups)')
    .option('--memory <spec>', 'cap each agent\'s memory: 256MiB, or per agent as for --cpu (needs root: cgroups)')
    .action(async (opts: { peers: number, demo?: boolean, wasmSlots?: string, dockerPeers?: number, cpu?: string, memory?: string }, cmd: Command) => {
      if (!Number.isInteger(opts.peers) || opts.peers < 1 || opts.peers > 64) throw new UserError('--peers must be a number from 1 to 64')
      const cpus = opts.cpu !== undefined ? parsePerAgent('--cpu', opts.cpu, opts.peers, parseCpu) : []
      const memory = opts.memory !== undefined ? parsePerAgent('--memory', opts.memory, opts.peers, parseMemory) : []
      const dockerPeers = opts.dockerPeers ?? opts.peers
      if (!Number.isInteger(dockerPeers) || dockerPeers < 0) throw new UserError('--docker-peers must be a whole number')
      const { Testnet, defaultTestnetHome, up } = testnetModule()
      const home = defaultTestnetHome()
      const existing = Testnet.load(home)
      if (existing !== undefined) {
        if (existing.agents.some(a => isOurAgent(a.pid, a.dataDir))) throw new UserError(`a testnet is already running in ${home}: 'edge testnet down' first`)
        await withCgroups(async () => { await existing.down() })
      }
      const started = Date.now()
      const net = await withCgroups(async () => await up({
        peers: opts.peers,
        dir: home,
        agentArgs: (k) => [...(opts.wasmSlots !== undefined ? ['--wasm-slots', opts.wasmSlots] : []), ...(k > dockerPeers ? ['--no-docker'] : [])],
        cpu: (k) => cpus[k - 1],
        memoryBytes: (k) => memory[k - 1],
        onProgress: globals(cmd).json === true ? undefined : progressPrinter()
      }))
      if (globals(cmd).json === true) printJson(net.state)
      else {
        process.stdout.write(`testnet of ${opts.peers} agents up in ${((Date.now() - started) / 1000).toFixed(1)} s; every agent sees the other ${opts.peers - 1}\n`)
        process.stdout.write(describe(net) + '\n')
        process.stdout.write('\ntalk to one with: edge --node K status | peers | list | deploy | invoke   (or edge --agent URL …)\n')
        process.stdout.write('stop it with:     edge testnet down\n')
      }
      if (opts.demo === true) await demo(net)
    })

  testnet.command('status')
    .description('the agents of the running testnet')
    .action(async (_opts: unknown, cmd: Command) => {
      const net = load()
      if (globals(cmd).json === true) { printJson(net.state); return }
      process.stdout.write(describe(net) + '\n')
    })

  testnet.command('down')
    .description('stop every agent and remove the testnet\'s files')
    .action(async () => {
      const { Testnet, defaultTestnetHome } = testnetModule()
      const net = Testnet.load(defaultTestnetHome())
      if (net === undefined) { process.stdout.write('no testnet running\n'); return }
      await withCgroups(async () => { await net.down() })
      process.stdout.write(`stopped ${net.agents.length} agents, removed ${net.state.dir}\n`)
    })

  testnet.command('stop')
    .description('stop agent K (SIGTERM, or SIGKILL with --kill), keeping its identity and data')
    .argument('<k>')
    .option('--kill', 'SIGKILL instead of SIGTERM, as in a crash')
    .action(async (k: string, opts: { kill?: boolean }) => {
      const net = load()
      const i = nodeIndex(net, k)
      await net.stop(i, { kill: opts.kill === true })
      process.stdout.write(`agent ${i} stopped\n`)
    })

  testnet.command('start')
    .description('start agent K again with the same identity and data')
    .argument('<k>')
    .action(async (k: string) => {
      const net = load()
      const i = nodeIndex(net, k)
      const a = await withCgroups(async () => await net.start(i))
      await net.waitForMesh()
      process.stdout.write(`agent ${i} running (pid ${a.pid}, api ${a.api}) and sees every running agent\n`)
    })
}
