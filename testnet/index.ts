import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync, existsSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { AgentClient } from '../cli/client.js'
import { isOurAgent, sleep, spawnAgent, stopAgent } from './process.js'
import { applyCaps, cappedCommand, cgroupDirs, childCgroup, findCgroupRoots, removeCgroups, testnetCgroupName, validateCaps, type Caps, type CgroupDirs, type Controller } from './cgroups.js'

export type { Caps, CgroupDirs } from './cgroups.js'
export { CgroupBusyError, CgroupPermissionError, CgroupUnavailableError, findCgroupRoots } from './cgroups.js'

/**
 * A local swarm of N agent processes on 127.0.0.1: own data dirs and ports, one swarm key, all
 * bootstrapped to the first. Used by `edge testnet` and by the integration tests alike.
 */

export interface TestnetAgent {
  index: number
  dataDir: string
  logFile: string
  pid: number
  peerId: string
  api: string
  addrs: string[]
  /** Extra `edge-agent start` arguments, kept for restarts. */
  args: string[]
  /** CPU and memory caps, applied at every start. */
  caps?: Caps
  /** The cgroup that holds the caps (made at start, removed by `down`). */
  cgroup?: CgroupDirs
}

export interface TestnetState {
  dir: string
  createdAt: number
  swarmKey: string
  agents: TestnetAgent[]
  /** The group that holds the agents' groups, when any agent has caps. */
  cgroup?: CgroupDirs
}

export interface UpOptions {
  peers: number
  /** Folder for the state file, data dirs and logs; default: a new temp dir. */
  dir?: string
  /** Extra `edge-agent start` arguments per agent (index from 1). */
  agentArgs?: (index: number) => string[]
  /** Swarm key file for every agent, else one is made. */
  swarmKey?: string
  /** CPUs for agent `index` (0.3, 1.5), as a smaller device would have; needs root (cgroups). */
  cpu?: (index: number) => number | undefined
  /** Memory in bytes for agent `index`; needs root (cgroups). */
  memoryBytes?: (index: number) => number | undefined
  /** Per agent: the longest its start may take. Default 60 s. */
  readyTimeoutMs?: number
  /** Convergence fails when no agent sees one more peer for this long. Default 20 s. */
  stallMs?: number
  onProgress?: (message: string) => void
}

/** Agents started at once by `up`. */
const STARTING_AT_ONCE = 8

export const STATE_FILE = 'testnet.json'

/** Where `edge testnet` keeps the state of the user's testnet. */
export function defaultTestnetHome (): string {
  return process.env.EDGE_TESTNET_HOME ?? join(tmpdir(), `edge-testnet-${process.getuid?.() ?? 'user'}`)
}

interface RuntimeFile { pid: number, peerId: string, api: string, addrs: string[] }

export class Testnet {
  state: TestnetState

  constructor (state: TestnetState) {
    this.state = state
  }

  static load (dir: string): Testnet | undefined {
    const file = join(dir, STATE_FILE)
    if (!existsSync(file)) return undefined
    return new Testnet(JSON.parse(readFileSync(file, 'utf8')) as TestnetState)
  }

  get agents (): TestnetAgent[] {
    return this.state.agents
  }

  agent (k: number): TestnetAgent {
    const a = this.state.agents[k - 1]
    if (a === undefined) throw new RangeError(`no agent ${k} in this testnet (it has ${this.state.agents.length})`)
    return a
  }

  client (k: number): AgentClient {
    return new AgentClient(this.agent(k).api)
  }

  save (): void {
    writeFileSync(join(this.state.dir, STATE_FILE), JSON.stringify(this.state, null, 2))
  }

  /**
   * Starts agent k (again), with its identity and data, and waits until its API answers. A restarted
   * agent listens on its previous port, so that peers can redial it; with `bootstrap: false` it does
   * not dial anyone itself and relies on them.
   */
  async start (k: number, options: { agentArgs?: string[], timeoutMs?: number, bootstrap?: boolean } = {}): Promise<TestnetAgent> {
    const a = this.agent(k)
    if (isOurAgent(a.pid, a.dataDir)) return a
    const bootstrap = options.bootstrap === false
      ? []
      : this.state.agents.filter(o => o.index !== k && o.addrs.length > 0 && isOurAgent(o.pid, o.dataDir)).slice(0, 3).flatMap(o => ['--bootstrap', loopbackAddr(o)])
    const previous = a.addrs.length > 0 ? loopbackAddr(a).replace(/\/p2p\/.*$/, '') : '/ip4/127.0.0.1/tcp/0'
    rmSync(join(a.dataDir, 'agent.json'), { force: true })
    if (options.agentArgs !== undefined) a.args = options.agentArgs
    // The same caps at every start; the group is made again if it went (as after a reboot).
    if (a.cgroup !== undefined) applyCaps(a.cgroup, a.caps ?? {})
    const node = a.cgroup !== undefined ? cappedCommand(a.cgroup, [process.execPath]) : undefined
    const pid = spawnAgent(['--data-dir', a.dataDir, '--listen', previous, '--api-port', '0', '--no-mdns', ...bootstrap, ...(a.args ?? [])], a.logFile, {}, node)
    // Known at once, so that a testnet torn down while this agent starts stops it too.
    a.pid = pid
    this.save()
    let info: RuntimeFile
    try {
      info = await waitForAgent(a.dataDir, pid, a.logFile, options.timeoutMs ?? 30_000)
    } catch (err) {
      await stopAgent(pid, a.dataDir, 'SIGKILL').catch(() => {})
      throw err
    }
    Object.assign(a, { peerId: info.peerId, api: info.api, addrs: info.addrs })
    this.save()
    return a
  }

  /** Stops agent k: SIGTERM (clean), or SIGKILL with `kill` (a crash). */
  async stop (k: number, options: { kill?: boolean } = {}): Promise<void> {
    const a = this.agent(k)
    await stopAgent(a.pid, a.dataDir, options.kill === true ? 'SIGKILL' : 'SIGTERM')
  }

  /**
   * Waits until every running agent sees every other running agent in its peer table, for as long
   * as that makes progress: it fails, saying who lacks whom, only when `stallMs` pass with no agent
   * seeing one more peer. `onProgress` hears how many of the pairs are there.
   */
  async waitForMesh (stallMs = 20_000, onProgress?: (seen: number, of: number) => void): Promise<void> {
    const running = this.state.agents.filter(a => isOurAgent(a.pid, a.dataDir))
    const of = running.length * (running.length - 1)
    let best = -1
    let progressAt = Date.now()
    let lacking = new Map<TestnetAgent, TestnetAgent[]>()
    while (true) {
      lacking = new Map()
      const views = await Promise.all(running.map(async (a) => new Set((await new AgentClient(a.api, { timeoutMs: 5000 }).peers().catch(() => [])).map(p => p.peerId))))
      let seen = 0
      for (const [i, a] of running.entries()) {
        const view = views[i] as Set<string>
        const missing = running.filter(o => o !== a && !view.has(o.peerId))
        seen += running.length - 1 - missing.length
        if (missing.length > 0) lacking.set(a, missing)
      }
      if (seen > best) {
        best = seen
        progressAt = Date.now()
        onProgress?.(seen, of)
      }
      if (lacking.size === 0) return
      if (Date.now() - progressAt > stallMs) break
      await sleep(500)
    }
    const shown = [...lacking].slice(0, 8).map(([a, m]) => `agent ${a.index} lacks ${m.slice(0, 10).map(o => o.index).join(',')}${m.length > 10 ? ',…' : ''}`)
    throw new Error(`testnet stopped converging (no progress for ${Math.round(stallMs / 1000)} s, ${best} of ${of} peer sightings): ${shown.join('; ')}${lacking.size > 8 ? `; and ${lacking.size - 8} agents more` : ''}`)
  }

  /**
   * Stops every agent, removes the containers any of them left (one killed with -9 leaves its warm
   * containers until that identity starts again), their cgroups, then the testnet's folder (kept if
   * a cgroup is busy, so that `down` can be retried).
   */
  async down (): Promise<void> {
    await Promise.all(this.state.agents.map(async (a) => { await stopAgent(a.pid, a.dataDir) }))
    await reapLeftovers(this.state.agents.map(a => a.peerId))
    await removeCgroups([...this.state.agents.flatMap(a => cgroupDirs(a.cgroup)), ...cgroupDirs(this.state.cgroup)])
    rmSync(this.state.dir, { recursive: true, force: true })
  }
}

/** Removes containers labelled as owned by these agents, when Docker is here (none is no error). */
async function reapLeftovers (owners: string[]): Promise<void> {
  const { connectDocker, reapContainers } = await import('../runtimes/docker/index.js')
  const docker = await connectDocker(2000).catch(() => undefined)
  if (docker === undefined) return
  await Promise.all(owners.map(async (owner) => await reapContainers(docker, owner)))
}

function loopbackAddr (a: TestnetAgent): string {
  const addr = a.addrs.find(x => x.startsWith('/ip4/127.0.0.1/tcp/')) ?? a.addrs[0]
  if (addr === undefined) throw new Error(`agent ${a.index} has no address`)
  return addr.includes('/p2p/') ? addr : `${addr}/p2p/${a.peerId}`
}

/** Waits until the agent process `pid` in `dataDir` has written its runtime file and its API answers; fails at once if it exits. */
export async function waitForAgent (dataDir: string, pid: number, logFile: string, timeoutMs: number): Promise<RuntimeFile> {
  const file = join(dataDir, 'agent.json')
  const until = Date.now() + timeoutMs
  while (Date.now() < until) {
    if (!isOurAgent(pid, dataDir)) {
      const log = existsSync(logFile) ? readFileSync(logFile, 'utf8').trim().split('\n').slice(-5).join('\n') : ''
      throw new Error(`agent in ${dataDir} exited during start:\n${log}`)
    }
    if (existsSync(file)) {
      try {
        const info = JSON.parse(readFileSync(file, 'utf8')) as RuntimeFile
        if (info.pid === pid) {
          await new AgentClient(info.api, { timeoutMs: 2000 }).status()
          return info
        }
      } catch {
        // not written completely or API not up yet
      }
    }
    await sleep(50)
  }
  throw new Error(`agent in ${dataDir} was not ready within ${timeoutMs} ms (log: ${logFile})`)
}

/** Starts N agents and waits until each sees all the others. Cleans up everything if it fails. */
export async function up (options: UpOptions): Promise<Testnet> {
  if (!Number.isInteger(options.peers) || options.peers < 1 || options.peers > 64) throw new RangeError('--peers must be between 1 and 64')
  // Caps are checked, and root for them, before anything is made or started.
  const caps: Caps[] = []
  for (let k = 1; k <= options.peers; k++) {
    const c: Caps = {}
    const cpu = options.cpu?.(k)
    const memoryBytes = options.memoryBytes?.(k)
    if (cpu !== undefined) c.cpu = cpu
    if (memoryBytes !== undefined) c.memoryBytes = memoryBytes
    validateCaps(c, `agent ${k}`)
    caps.push(c)
  }
  const need: Controller[] = [...(caps.some(c => c.cpu !== undefined) ? ['cpu' as const] : []), ...(caps.some(c => c.memoryBytes !== undefined) ? ['memory' as const] : [])]
  const cgroupRoots = need.length > 0 ? findCgroupRoots(need) : undefined
  const dir = options.dir ?? mkdtempSync(join(tmpdir(), 'edge-testnet-'))
  mkdirSync(dir, { recursive: true })
  const progress = options.onProgress ?? (() => {})
  const swarmKey = options.swarmKey ?? join(dir, 'swarm.key')
  const state: TestnetState = { dir, createdAt: Date.now(), swarmKey, agents: [] }
  if (cgroupRoots !== undefined) state.cgroup = childCgroup(cgroupRoots, testnetCgroupName())
  const net = new Testnet(state)
  try {
    for (let k = 1; k <= options.peers; k++) {
      const a: TestnetAgent = { index: k, dataDir: join(dir, `agent-${k}`), logFile: join(dir, `agent-${k}.log`), pid: 0, peerId: '', api: '', addrs: [], args: options.agentArgs?.(k) ?? [] }
      const c = caps[k - 1] ?? {}
      if (state.cgroup !== undefined && (c.cpu !== undefined || c.memoryBytes !== undefined)) Object.assign(a, { caps: c, cgroup: childCgroup(state.cgroup, `agent-${k}`, c) })
      state.agents.push(a)
    }
    // Every agent initialised here, as 'edge-agent init' would (config, identity, swarm key), with
    // one swarm key; and, as one owner's devices, each trusting the others' keys. In this process:
    // two commands per agent would be a hundred processes for a testnet of fifty.
    const { createPeerKey, newSwarmKey, validateSwarmKey, writeSwarmKey } = await import('../agent/swarm/identity.js')
    const { writeConfig } = await import('../agent/config.js')
    const { peerIdFromPrivateKey } = await import('@libp2p/peer-id')
    const key = options.swarmKey === undefined ? newSwarmKey() : validateSwarmKey(readFileSync(options.swarmKey), options.swarmKey)
    if (options.swarmKey === undefined) writeFileSync(swarmKey, key, { mode: 0o600 })
    const ids = new Map<TestnetAgent, string>()
    for (const a of state.agents) {
      ids.set(a, peerIdFromPrivateKey(await createPeerKey(a.dataDir)).toString())
      writeSwarmKey(a.dataDir, key)
    }
    for (const a of state.agents) writeConfig(a.dataDir, { trustedKeys: state.agents.filter(o => o !== a).map(o => ids.get(o) as string) })
    net.save()
    // The first agent starts alone; the rest bootstrap to it (and to those up before them), a few
    // at a time, so that a big testnet does not start fifty processes on two cores at once.
    await net.start(1, { timeoutMs: options.readyTimeoutMs ?? 60_000 })
    progress(`agent 1 up: ${net.agent(1).peerId}`)
    const queue = state.agents.slice(1)
    await Promise.all(Array.from({ length: Math.min(STARTING_AT_ONCE, queue.length) }, async () => {
      for (let a = queue.shift(); a !== undefined; a = queue.shift()) {
        await net.start(a.index, { timeoutMs: options.readyTimeoutMs ?? 60_000 })
        progress(`agent ${a.index} up: ${a.peerId}`)
      }
    }))
    await net.waitForMesh(options.stallMs ?? 20_000, (seen, of) => { progress(`converging: ${seen} of ${of} peer sightings`) })
    progress(`converged: every agent sees the other ${options.peers - 1}`)
    return net
  } catch (err) {
    await net.down().catch(() => {})
    throw err
  }
}
