import { existsSync } from 'node:fs'
import { join } from 'node:path'
import Conf from 'conf'
import { ConfigError } from './errors.js'
import { DEFAULT_API_PORT } from './defaults.js'
export { DEFAULT_API_PORT, defaultDataDir } from './defaults.js'

/** Settings of one agent, persisted as config.json in its data directory. */
export interface AgentConfig {
  listen: string[]
  announce: string[]
  bootstrap: string[]
  apiHost: string
  apiPort: number
  /** Bearer token the API requires; mandatory when apiHost is not loopback. $EDGE_API_TOKEN overrides. */
  apiToken: string
  labels: Record<string, string>
  /** Concurrent WASM calls (worker threads). 0 = one per CPU, at least 2. */
  wasmSlots: number
  /**
   * Calls that may wait for a local slot, at most: a bound on memory only. What bounds the queue is
   * its expected wait against each call's deadline (a call that could not start in time is refused
   * or sent elsewhere).
   */
  maxQueue: number
  /** Multicast DNS discovery on the LAN. */
  mdns: boolean
  /**
   * Seconds of advert silence after which a peer leaves the peer table though libp2p still holds
   * a connection to it (a peer whose connection is gone leaves once libp2p gives up redialling).
   */
  peerExpirySeconds: number
  /** The adverts' heartbeat: an advert goes out at least this often, and at once (≤ 2/s) when holdings or load change. */
  advertIntervalMs: number
  /**
   * Peers this agent picks to keep a connection to (with those that pick it, about twice as many
   * connections); others are dialled when a call goes there. 0: a connection to every peer.
   */
  neighbours: number
  /** Peer ids of deployers whose signed manifests this agent runs, besides its own. */
  trustedKeys: string[]
  /**
   * The owner key's id (roster.ts): every device on its newest roster is trusted, as a peer and as
   * a deployer. Made at init for a device that founds a swarm, taken from the invite by one that joins.
   */
  owner: string
  /** Devices to take off the owner's roster (`edge-agent trust revoke`): applied by the device holding the owner key. */
  revoked: string[]
  /** Copies of each function's code the swarm keeps, so that holders may leave. */
  replicas: number
  /** Versions of each function the swarm keeps for `edge invoke NAME@VERSION`; older ones are dropped. */
  versionsKept: number
  /** Bytes of function code this agent may hold on disk. */
  storageBytes: number
  /** Run node, python and binary functions in Docker when it is there. */
  docker: boolean
  /** Container calls at once, and containers kept, across all functions. 0 = one per CPU, at least 2. */
  dockerSlots: number
  /** Idle ms before a warm container is removed (a function's manifest may say otherwise). */
  keepaliveMs: number
  /** Docker network for functions whose manifest asks for network access. */
  dockerNetwork: string
  /** Async calls run at once; the others wait in the journal. */
  asyncConcurrency: number
  /** Async calls accepted and not finished, beyond which new ones are refused. */
  asyncMaxPending: number
  /** How long a finished async call's result is kept for `edge poll`. */
  resultsTtlMs: number
  /** How long an async call may wait for a free place before it fails as overloaded. */
  asyncMaxWaitMs: number
  /** HOST:PORT of the CoAP ingress (e.g. 0.0.0.0:5683); empty: no CoAP. */
  coapListen: string
}

export const DEFAULT_CONFIG: AgentConfig = {
  listen: ['/ip4/0.0.0.0/tcp/4001'],
  announce: [],
  bootstrap: [],
  apiHost: '127.0.0.1',
  apiPort: DEFAULT_API_PORT,
  apiToken: '',
  labels: {},
  wasmSlots: 0,
  maxQueue: 1024,
  mdns: true,
  peerExpirySeconds: 240,
  advertIntervalMs: 60_000,
  neighbours: 6,
  trustedKeys: [],
  owner: '',
  revoked: [],
  replicas: 3,
  versionsKept: 3,
  storageBytes: 2 * 1024 ** 3,
  docker: true,
  dockerSlots: 0,
  keepaliveMs: 60_000,
  dockerNetwork: 'bridge',
  asyncConcurrency: 4,
  asyncMaxPending: 1000,
  resultsTtlMs: 3_600_000,
  asyncMaxWaitMs: 600_000,
  coapListen: ''
}


function store (dataDir: string): Conf<AgentConfig> {
  return new Conf<AgentConfig>({ cwd: dataDir, configName: 'config', projectName: 'edge-agent', defaults: DEFAULT_CONFIG })
}

export function writeConfig (dataDir: string, patch: Partial<AgentConfig>): AgentConfig {
  const conf = store(dataDir)
  for (const [k, v] of Object.entries(patch)) {
    if (v !== undefined) conf.set(k as keyof AgentConfig, v as never)
  }
  return { ...DEFAULT_CONFIG, ...conf.store }
}

export function readConfig (dataDir: string): AgentConfig {
  if (!existsSync(join(dataDir, 'config.json'))) {
    throw new ConfigError(`no agent in ${dataDir}: run 'edge-agent init --data-dir ${dataDir}' first`)
  }
  try {
    return { ...DEFAULT_CONFIG, ...store(dataDir).store }
  } catch (err) {
    throw new ConfigError(`cannot read ${join(dataDir, 'config.json')}: ${(err as Error).message}`, { cause: err })
  }
}

/** Parses "k=v,k2=v2" as given to --labels. */
export function parseLabels (text: string): Record<string, string> {
  const labels: Record<string, string> = {}
  for (const part of text.split(',').map(s => s.trim()).filter(Boolean)) {
    const eq = part.indexOf('=')
    if (eq <= 0) throw new ConfigError(`bad label '${part}': expected key=value`)
    labels[part.slice(0, eq)] = part.slice(eq + 1)
  }
  return labels
}
