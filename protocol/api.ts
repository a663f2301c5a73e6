import type { ContainerOptions, RuntimeKind } from './messages.js'

/**
 * The agent's HTTP API, typed once: what its endpoints answer, as the agent builds it
 * (agent/agent.ts, agent/ingress/api/server.ts) and the CLI reads it (cli/client.ts). Types only: this
 * module loads nothing. Bodies are JSON; bytes travel as base64 (`output`, `input`).
 */

export interface FunctionInfo {
  name: string
  version: number
  sha256: string
  runtime: string
  size?: number
  memoryBytes?: number
  timeoutMs?: number
  local: boolean
  holders: string[]
  /** Every version the swarm keeps, newest first. */
  versions?: Array<{ version: number, sha256: string, holders: number, local: boolean }>
}

export interface RuntimeInfo { kind: string, slots: number, busy: number, free?: number, queued?: number }

export interface PeerInfo {
  peerId: string
  arch: string
  platform: string
  cpus: number
  addrs: string[]
  labels: Record<string, string>
  runtimes: RuntimeInfo[]
  queue: number
  functions: string[]
  rttMs?: number
  advertAgeMs: number
}

export interface StatusInfo {
  peerId: string
  version: string
  addrs: string[]
  api: string
  arch: string
  platform: string
  node: string
  cpus: number
  memTotal: number
  memFree: number
  rss: number
  uptimeMs: number
  labels: Record<string, string>
  runtimes: RuntimeInfo[]
  docker?: { available: boolean, reason?: string, total?: number, functions?: Array<{ name: string, version: number, containers: number, busy: number }> }
  functions: Array<{ name: string, version: number, sha256: string }>
  peers: number
  /** Peers that joined and left this agent's peer table since it started. */
  peerEvents: { joined: number, left: number }
  connections: number
  droppedMessages: number
  advertsSent: number
  /** The CoAP ingress URL, when the agent serves CoAP. */
  coap: string | null
  async: { queued: number, running: number, done: number, failed: number }
  /** Connection problems of the last minute (another swarm key, a bootstrap peer that does not answer), each a line to act on. */
  problems?: Array<{ message: string, count: number, lastAt: number }>
  /** The owner this device belongs to, whether it holds the owner key, and its roster. */
  owner?: { id: string, holdsKey: boolean, roster: number, devices: number }
}

export interface ManifestInfo {
  type: 'manifest' | 'tombstone'
  name: string
  version: number
  runtime?: string
  entry?: string
  env?: Record<string, string>
  container?: ContainerOptions
  limits?: { memoryBytes: number, timeoutMs: number, concurrency: number }
  chunks?: string[]
  size?: number
  sha256?: string
  deployedAt: number
  signer: string
  trusted: boolean
  source: 'dht' | 'local' | 'gossip'
}

export interface Attempt { peerId: string, outcome: string, message?: string }

export interface InvokeResponse {
  output: string
  ranOn: string
  local: boolean
  warm: boolean
  policy: string
  function: { name: string, version: number, sha256: string }
  timings: { queueMs: number, fetchMs: number, runMs: number, networkMs: number, totalMs: number, initMs?: number }
  attempts: Attempt[]
  ranking?: { candidates: Array<{ peerId: string, local: boolean, reason: string }>, skipped: Array<{ peerId: string, reason: string }> }
}

/** A call that ran on an agent (`edge logs`). */
export interface CallLogEntry {
  /** When it ended (ms since the epoch). */
  at: number
  name: string
  version: number
  /** 'local', or the peer that offloaded the call. */
  from: string
  outcome: 'ok' | 'error'
  warm: boolean
  runMs: number
  stderr: string
  error?: string
}

/** An async call as the agent keeps it (`edge invoke --async`, `edge poll`). */
export interface AsyncRequest {
  id: string
  /** NAME@VERSION, fixed when the call was accepted. */
  target: string
  state: 'queued' | 'running' | 'done' | 'failed'
  options: { policy?: string, peer?: string, timeoutMs?: number }
  submittedAt: number
  startedAt?: number
  finishedAt?: number
  dispatches: number
  waiting?: string
  result?: InvokeResponse
  error?: { name: string, code: string, message: string, stderr?: string }
}

/** `GET /readyz`: 200 when ready, 503 with the reasons when not. */
export interface ReadinessInfo {
  ready: boolean
  reasons: string[]
  peers: number
}

/** `PUT /v1/functions/NAME` as the agent takes it (its query and headers, parsed). */
export interface DeployOptions {
  /** Default: wasm. */
  runtime?: RuntimeKind
  memoryBytes?: number
  timeoutMs?: number
  /** Container runtimes: the file holding the handler (default: found by its usual name). */
  entry?: string
  env?: Record<string, string>
  container?: ContainerOptions
  /** A manifest signed by the deployer's own key (`edge deploy --key`): its version and limits count. */
  record?: Uint8Array
}

