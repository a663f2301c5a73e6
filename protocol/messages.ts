/**
 * Every message that crosses the wire. Each carries `v` (WIRE_VERSION) and `type`.
 * Receivers validate with the functions in validate.ts before trusting any field.
 */

export const RuntimeKind = {
  wasm: 'wasm',
  node: 'node',
  python: 'python',
  binary: 'binary'
} as const
export type RuntimeKind = typeof RuntimeKind[keyof typeof RuntimeKind]

/** The runtimes that run functions in Docker containers. */
export const CONTAINER_RUNTIMES: readonly RuntimeKind[] = [RuntimeKind.node, RuntimeKind.python, RuntimeKind.binary]

/** How a container function runs: its manifest's `container` section. Every field is optional; defaults in brackets. */
export interface ContainerOptions {
  /** Idle ms before a warm container is removed [the agent's --keepalive]. */
  keepaliveMs?: number
  /** Calls one container serves at once [1; node functions only]. */
  concurrency?: number
  /** Containers of this function on one agent at once [the agent's Docker slots]. */
  maxContainers?: number
  /** A fresh container for every call, removed after it [false]. */
  singleUse?: boolean
  /** Network access [false: the container has no network at all]. */
  network?: boolean
  /** CPU share, e.g. 0.5 [1]. */
  cpus?: number
  /** Processes and threads [64]. */
  pids?: number
}

/** What a function is, independent of where its code lives. */
export interface FunctionSpec {
  name: string
  version: number
  runtime: RuntimeKind
  /** sha256 of the artifact, hex. */
  sha256: string
  size: number
  memoryBytes: number
  timeoutMs: number
  /** ms since epoch; breaks ties between equal versions (newest wins). */
  deployedAt: number
  /** Container runtimes: the file within the artifact that holds the handler. */
  entry?: string
  /** Container runtimes: environment of the function. */
  env?: Record<string, string>
  container?: ContainerOptions
}

export interface FunctionRef {
  name: string
  version: number
  sha256: string
}

export interface RuntimeCapacity {
  kind: RuntimeKind
  slots: number
  busy: number
}

/** Published on ADVERTS_TOPIC when holdings or load change (at most twice a second) and on a slow heartbeat; also sent in a hello. */
export interface Advert {
  v: number
  type: 'advert'
  peerId: string
  addrs: string[]
  arch: string
  platform: string
  cpus: number
  memTotal: number
  memFree: number
  runtimes: RuntimeCapacity[]
  queue: number
  labels: Record<string, string>
  /** sha256 of functions that would run without a cold start (a compiled module, a started container). */
  warm: string[]
  /** Functions whose code this agent holds and serves over /edge/fetch/1. */
  functions: FunctionRef[]
  /** Deployer keys this agent trusts besides its own (so that replicas are placed where they may run). */
  trusted?: string[]
  /**
   * Peers this agent watched go in the last minute: its connection to them closed and a redial was
   * refused. A hint only: a receiver drops such a peer only if its own dial is refused too.
   */
  lost?: string[]
  seq: number
  sentAt: number
}

/**
 * An advert as its author published it on `edge/adverts/1`: the CBOR bytes, gossipsub's sequence
 * number and the author's signature over both (gossipsub's "libp2p-pubsub:" format). Any agent can
 * pass it on and any can check it, so a newcomer learns the whole swarm from one neighbour.
 */
export interface SignedAdvert {
  data: Uint8Array
  seqno: Uint8Array
  signature: Uint8Array
}

/**
 * Sent both ways on /edge/hello/1 when a connection opens: the sender's own advert (authenticated
 * by the connection: its peerId must be the remote's), hints of other peers (their ids and
 * addresses, unauthenticated), and the signed adverts it holds of others (each checked against its
 * author's key: a peer is in the table only by its own signed advert).
 */
export interface Hello {
  v: number
  type: 'hello'
  advert: Advert
  peers: Array<{ peerId: string, addrs: string[] }>
  /** Others' adverts as they signed them, each checked on receipt (absent from older agents). */
  relays?: SignedAdvert[]
  /**
   * How many peers the sender's table holds: the answer carries others' adverts only to a sender
   * that knows fewer than the answerer (a newcomer, a restarted agent) or that the answerer did not
   * know, not to every connection.
   */
  knows?: number
  /** The newest roster (roster.ts) of the sender's owner: how a device that was away learns of joins and revocations. */
  roster?: Uint8Array
}

export interface DeployAnnouncement {
  v: number
  type: 'deploy'
  fn: FunctionSpec
  holder: string
  at: number
  /** The signed manifest record (as stored in the DHT), so that receivers can trust it without a look-up. */
  record?: Uint8Array
  /** The code itself, when it is small (MAX_INLINE_CODE_BYTES): receivers need not fetch it. Checked against the record's sha256. */
  code?: Uint8Array
}

export interface DeleteAnnouncement {
  v: number
  type: 'delete'
  name: string
  /** Every version up to and including this one is deleted. */
  version: number
  by: string
  at: number
  /** The signed tombstone, when a deployer key other than the announcing agent's signed it. */
  record?: Uint8Array
}

/** A new roster of an owner's devices (a device joined or was revoked), flooded at once; hellos carry it too. */
export interface RosterAnnouncement {
  v: number
  type: 'roster'
  by: string
  at: number
  roster: Uint8Array
}

export type FunctionAnnouncement = DeployAnnouncement | DeleteAnnouncement | RosterAnnouncement

export interface InvokeRequest {
  v: number
  type: 'invoke'
  id: number
  /** Which function: the callee takes its limits from its own registry or the holder, never from the caller. */
  fn: FunctionRef
  input: Uint8Array
  /** ms the caller is still willing to wait, counted from receipt. */
  deadlineMs: number
  /** Peers known to hold the code, for the callee to fetch from. */
  holders: string[]
  /** Wait in the callee's queue when its slots are busy, instead of BUSY at once; the callee still refuses a wait longer than the deadline. */
  queue?: boolean
}

/** The caller gave up on call `id` (its client left, its deadline passed, its agent is stopping): stop it and free its slot. */
export interface InvokeCancel {
  v: number
  type: 'cancel'
  id: number
}

export type InvokeFrame = InvokeRequest | InvokeCancel

/**
 * The callee's load as it answers a call (a result or an error): the runtime that runs the
 * function, after this call gave its slot back. Fresher than any advert, and free to carry.
 */
export interface PeerLoad {
  slots: number
  busy: number
  queued: number
  /** Calls of this caller still running or queued there, this one not included. */
  yours: number
}

export interface InvokeTimings {
  queueMs: number
  fetchMs: number
  runMs: number
  /** A cold start: ms to create and start the container and load the function (part of runMs). */
  initMs?: number
}

export interface InvokeResult {
  v: number
  type: 'result'
  id: number
  output: Uint8Array
  warm: boolean
  timings: InvokeTimings
  load?: PeerLoad
}

export interface InvokeFailure {
  v: number
  type: 'error'
  id: number
  code: string
  message: string
  stderr?: string
  load?: PeerLoad
  /** With BUSY: when the callee expects to have room again, in ms. */
  retryAfterMs?: number
}

export type InvokeResponse = InvokeResult | InvokeFailure

/** One chunk of code by its CID (from a manifest in the DHT). */
export interface FetchChunkRequest {
  v: number
  type: 'fetch-chunk'
  cid: string
}

export interface ChunkHeader {
  v: number
  type: 'chunk-ok'
  size: number
}

export interface FetchChunk {
  v: number
  type: 'chunk'
  data: Uint8Array
}
