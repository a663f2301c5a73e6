import { BadRequestError, InvalidMessageError } from './errors.js'
import { parseCid } from './chunks.js'
import { RuntimeKind, type Advert, type ContainerOptions, type ChunkHeader, type DeleteAnnouncement, type DeployAnnouncement, type FetchChunk, type FetchChunkRequest, type FunctionAnnouncement, type FunctionRef, type Hello, type FunctionSpec, type InvokeFrame, type InvokeRequest, type InvokeResponse, type PeerLoad, type RuntimeCapacity, type SignedAdvert } from './messages.js'
import { MAX_CODE_BYTES, MAX_ROSTER_BYTES, MAX_GOSSIP_BYTES, MAX_INLINE_CODE_BYTES, MAX_HELLO_PEERS, MAX_HELLO_RELAY_BYTES, MAX_HELLO_RELAYS, MAX_IO_BYTES, MAX_LOST_PEERS, WIRE_VERSION } from './protocols.js'

/**
 * Validators for untrusted input. Each returns a fresh, typed object holding only the known fields,
 * or throws InvalidMessageError naming the first bad field.
 */

type Obj = Record<string, unknown>

export const FUNCTION_NAME = /^[a-z0-9][a-z0-9._-]{0,62}$/
/** `NAME` or `NAME@VERSION`, as given to `edge invoke`. */
export function parseTarget (text: string): { name: string, version: number | undefined } {
  const m = /^([^@]*)(?:@(.*))?$/.exec(text)
  const name = m?.[1] ?? ''
  if (!FUNCTION_NAME.test(name)) throw new BadRequestError(`bad function name '${name}': use 1-63 of a-z, 0-9, '.', '_', '-', starting with a letter or digit`)
  const v = m?.[2]
  if (v === undefined) return { name, version: undefined }
  if (!/^[1-9][0-9]{0,15}$/.test(v) || !Number.isSafeInteger(Number(v))) throw new BadRequestError(`bad version '${v}' in '${text}': use NAME@N with N a version number (edge list shows them)`)
  return { name, version: Number(v) }
}

const SHA256 = /^[0-9a-f]{64}$/
const MAX_MEMORY_BYTES = 4 * 1024 * 1024 * 1024
const MAX_TIMEOUT_MS = 15 * 60 * 1000

function fail (field: string, why: string): never {
  throw new InvalidMessageError(`invalid ${field}: ${why}`)
}

function obj (value: unknown, field: string): Obj {
  if (value === null || typeof value !== 'object' || Array.isArray(value) || value instanceof Uint8Array) fail(field, 'not a map')
  return value as Obj
}

function str (value: unknown, field: string, max = 256, pattern?: RegExp): string {
  if (typeof value !== 'string') fail(field, 'not a string')
  if (value.length > max) fail(field, `longer than ${max}`)
  if (pattern !== undefined && !pattern.test(value)) fail(field, 'bad format')
  return value
}

function int (value: unknown, field: string, min = 0, max = Number.MAX_SAFE_INTEGER): number {
  if (typeof value !== 'number' || !Number.isInteger(value)) fail(field, 'not an integer')
  if (value < min || value > max) fail(field, `out of range ${min}..${max}`)
  return value
}

function num (value: unknown, field: string, min = 0, max = Number.MAX_VALUE): number {
  if (typeof value !== 'number' || !Number.isFinite(value)) fail(field, 'not a number')
  if (value < min || value > max) fail(field, 'out of range')
  return value
}

function bool (value: unknown, field: string): boolean {
  if (typeof value !== 'boolean') fail(field, 'not a boolean')
  return value
}

function bytes (value: unknown, field: string, max: number): Uint8Array {
  if (!(value instanceof Uint8Array)) fail(field, 'not bytes')
  if (value.byteLength > max) fail(field, `larger than ${max} bytes`)
  return value
}

function list<T> (value: unknown, field: string, max: number, item: (v: unknown, f: string) => T): T[] {
  if (!Array.isArray(value)) fail(field, 'not a list')
  if (value.length > max) fail(field, `more than ${max} items`)
  return value.map((v, i) => item(v, `${field}[${i}]`))
}

function header (value: unknown, type: string): Obj {
  const o = obj(value, 'message')
  if (o.v !== WIRE_VERSION) fail('v', `unsupported version ${String(o.v)} (this agent speaks ${WIRE_VERSION})`)
  if (o.type !== type) fail('type', `expected ${type}`)
  return o
}

function runtimeKind (value: unknown, field: string): RuntimeKind {
  if (!Object.values(RuntimeKind).includes(value as RuntimeKind)) fail(field, `unknown runtime ${String(value)}`)
  return value as RuntimeKind
}

/** A file path within a function's artifact: relative, no `..`, no odd characters. */
export const ENTRY_PATH = /^(?!.*(?:^|\/)\.\.?(?:\/|$))(?!.*\/\/)(?!.*\/$)[A-Za-z0-9_.-][A-Za-z0-9_./-]{0,254}$/

/** Environment variables a function may be given: names as POSIX has them, not the runtime's own. */
const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]{0,127}$/

export function validateEnv (value: unknown, field = 'env'): Record<string, string> {
  const o = obj(value, field)
  const entries = Object.entries(o)
  if (entries.length > 64) fail(field, 'more than 64 variables')
  const out: Record<string, string> = {}
  for (const [k, v] of entries) {
    if (!ENV_NAME.test(k) || k.startsWith('EDGE_')) fail(`${field}.${k}`, 'bad name (letters, digits and _, not starting with EDGE_)')
    out[k] = str(v, `${field}.${k}`, 4096)
  }
  return out
}

export function validateContainerOptions (value: unknown, field = 'container'): ContainerOptions {
  const o = obj(value, field)
  const out: ContainerOptions = {}
  if (o.keepaliveMs !== undefined) out.keepaliveMs = int(o.keepaliveMs, `${field}.keepaliveMs`, 0, 24 * 3600_000)
  if (o.concurrency !== undefined) out.concurrency = int(o.concurrency, `${field}.concurrency`, 1, 1024)
  if (o.maxContainers !== undefined) out.maxContainers = int(o.maxContainers, `${field}.maxContainers`, 1, 1024)
  if (o.singleUse !== undefined) out.singleUse = bool(o.singleUse, `${field}.singleUse`)
  if (o.network !== undefined) out.network = bool(o.network, `${field}.network`)
  if (o.cpus !== undefined) out.cpus = num(o.cpus, `${field}.cpus`, 0.01, 1024)
  if (o.pids !== undefined) out.pids = int(o.pids, `${field}.pids`, 8, 65536)
  return out
}

export function validateFunctionSpec (value: unknown, field = 'fn'): FunctionSpec {
  const o = obj(value, field)
  return {
    name: str(o.name, `${field}.name`, 63, FUNCTION_NAME),
    version: int(o.version, `${field}.version`, 1),
    runtime: runtimeKind(o.runtime, `${field}.runtime`),
    sha256: str(o.sha256, `${field}.sha256`, 64, SHA256),
    size: int(o.size, `${field}.size`, 1, MAX_CODE_BYTES),
    memoryBytes: int(o.memoryBytes, `${field}.memoryBytes`, 65536, MAX_MEMORY_BYTES),
    timeoutMs: int(o.timeoutMs, `${field}.timeoutMs`, 1, MAX_TIMEOUT_MS),
    deployedAt: int(o.deployedAt, `${field}.deployedAt`),
    ...(o.entry === undefined ? {} : { entry: str(o.entry, `${field}.entry`, 255, ENTRY_PATH) }),
    ...(o.env === undefined ? {} : { env: validateEnv(o.env, `${field}.env`) }),
    ...(o.container === undefined ? {} : { container: validateContainerOptions(o.container, `${field}.container`) })
  }
}

function functionRef (value: unknown, field: string): FunctionRef {
  const o = obj(value, field)
  return {
    name: str(o.name, `${field}.name`, 63, FUNCTION_NAME),
    version: int(o.version, `${field}.version`, 1),
    sha256: str(o.sha256, `${field}.sha256`, 64, SHA256)
  }
}

function capacity (value: unknown, field: string): RuntimeCapacity {
  const o = obj(value, field)
  const slots = int(o.slots, `${field}.slots`, 0, 4096)
  return { kind: runtimeKind(o.kind, `${field}.kind`), slots, busy: int(o.busy, `${field}.busy`, 0, 4096) }
}

function labels (value: unknown, field: string): Record<string, string> {
  const o = obj(value, field)
  const entries = Object.entries(o)
  if (entries.length > 32) fail(field, 'more than 32 labels')
  const out: Record<string, string> = {}
  for (const [k, v] of entries) {
    str(k, `${field} key`, 63)
    out[k] = str(v, `${field}.${k}`, 255)
  }
  return out
}

export function validateAdvert (value: unknown): Advert {
  const o = header(value, 'advert')
  return {
    v: WIRE_VERSION,
    type: 'advert',
    peerId: str(o.peerId, 'peerId', 128),
    addrs: list(o.addrs, 'addrs', 32, (v, f) => str(v, f, 256)),
    arch: str(o.arch, 'arch', 32),
    platform: str(o.platform, 'platform', 32),
    cpus: int(o.cpus, 'cpus', 0, 4096),
    memTotal: num(o.memTotal, 'memTotal'),
    memFree: num(o.memFree, 'memFree'),
    runtimes: list(o.runtimes, 'runtimes', 8, capacity),
    queue: int(o.queue, 'queue', 0, 1_000_000),
    labels: labels(o.labels, 'labels'),
    warm: list(o.warm, 'warm', 256, (v, f) => str(v, f, 64, SHA256)),
    functions: list(o.functions, 'functions', 256, functionRef),
    ...(o.trusted === undefined ? {} : { trusted: list(o.trusted, 'trusted', 64, (v, f) => str(v, f, 128)) }),
    ...(o.lost === undefined ? {} : { lost: list(o.lost, 'lost', MAX_LOST_PEERS, (v, f) => str(v, f, 128)) }),
    seq: int(o.seq, 'seq'),
    sentAt: int(o.sentAt, 'sentAt')
  }
}

export function validateHello (value: unknown): Hello {
  const o = header(value, 'hello')
  return {
    v: WIRE_VERSION,
    type: 'hello',
    advert: validateAdvert(o.advert),
    peers: list(o.peers, 'peers', MAX_HELLO_PEERS, (p, f) => {
      const e = obj(p, f)
      return { peerId: str(e.peerId, `${f}.peerId`, 128), addrs: list(e.addrs, `${f}.addrs`, 16, (a, g) => str(a, g, 512)) }
    }),
    ...(o.relays === undefined ? {} : { relays: signedAdverts(o.relays, 'relays') }),
    ...(o.knows === undefined ? {} : { knows: int(o.knows, 'knows') }),
    ...(o.roster === undefined ? {} : { roster: bytes(o.roster, 'roster', MAX_ROSTER_BYTES) })
  }
}

/** Signed adverts of a hello: each within gossip's size limit, all within MAX_HELLO_RELAY_BYTES. */
function signedAdverts (value: unknown, field: string): SignedAdvert[] {
  let total = 0
  return list(value, field, MAX_HELLO_RELAYS, (r, f) => {
    const e = obj(r, f)
    const relay = { data: bytes(e.data, `${f}.data`, MAX_GOSSIP_BYTES), seqno: bytes(e.seqno, `${f}.seqno`, 8), signature: bytes(e.signature, `${f}.signature`, 128) }
    total += relay.data.byteLength
    if (total > MAX_HELLO_RELAY_BYTES) fail(field, `larger than ${MAX_HELLO_RELAY_BYTES} bytes in all`)
    return relay
  })
}

export function validateAnnouncement (value: unknown): FunctionAnnouncement {
  const o = obj(value, 'message')
  if (o.type === 'roster') {
    header(value, 'roster')
    return { v: WIRE_VERSION, type: 'roster', by: str(o.by, 'by', 128), at: int(o.at, 'at'), roster: bytes(o.roster, 'roster', MAX_ROSTER_BYTES) }
  }
  if (o.type === 'delete') {
    header(value, 'delete')
    const del: DeleteAnnouncement = {
      v: WIRE_VERSION,
      type: 'delete',
      name: str(o.name, 'name', 63, FUNCTION_NAME),
      version: int(o.version, 'version', 1),
      by: str(o.by, 'by', 128),
      at: int(o.at, 'at')
    }
    return o.record === undefined ? del : { ...del, record: bytes(o.record, 'record', 16 * 1024) }
  }
  header(value, 'deploy')
  const deploy: DeployAnnouncement = { v: WIRE_VERSION, type: 'deploy', fn: validateFunctionSpec(o.fn), holder: str(o.holder, 'holder', 128), at: int(o.at, 'at') }
  if (o.record !== undefined) deploy.record = bytes(o.record, 'record', 16 * 1024)
  if (o.code !== undefined) {
    if (deploy.record === undefined) fail('code', 'comes without a signed record')
    deploy.code = bytes(o.code, 'code', MAX_INLINE_CODE_BYTES)
    if (deploy.code.byteLength !== deploy.fn.size) fail('code', `is ${deploy.code.byteLength} bytes, but fn.size says ${deploy.fn.size}`)
  }
  return deploy
}

export function validateInvokeRequest (value: unknown): InvokeRequest {
  const o = header(value, 'invoke')
  return {
    v: WIRE_VERSION,
    type: 'invoke',
    id: int(o.id, 'id'),
    fn: functionRef(o.fn, 'fn'),
    input: bytes(o.input, 'input', MAX_IO_BYTES),
    deadlineMs: int(o.deadlineMs, 'deadlineMs', 1, MAX_TIMEOUT_MS * 2),
    holders: list(o.holders, 'holders', 16, (v, f) => str(v, f, 128)),
    queue: o.queue === undefined ? false : bool(o.queue, 'queue')
  }
}

/** A frame from a caller on /edge/invoke/1: a call, or the cancel of one. */
export function validateInvokeFrame (value: unknown): InvokeFrame {
  if (obj(value, 'message').type === 'cancel') {
    const o = header(value, 'cancel')
    return { v: WIRE_VERSION, type: 'cancel', id: int(o.id, 'id') }
  }
  return validateInvokeRequest(value)
}

const MAX_SLOTS = 1 << 20

function peerLoad (value: unknown): PeerLoad {
  const o = obj(value, 'load')
  return {
    slots: int(o.slots, 'load.slots', 0, MAX_SLOTS),
    busy: int(o.busy, 'load.busy', 0, MAX_SLOTS),
    queued: int(o.queued, 'load.queued', 0, MAX_SLOTS),
    yours: int(o.yours, 'load.yours', 0, MAX_SLOTS)
  }
}

export function validateInvokeResponse (value: unknown): InvokeResponse {
  const o = obj(value, 'message')
  if (o.type === 'error') {
    header(value, 'error')
    return {
      v: WIRE_VERSION,
      type: 'error' as const,
      id: int(o.id, 'id'),
      code: str(o.code, 'code', 32),
      message: str(o.message, 'message', 4096),
      ...(o.stderr === undefined ? {} : { stderr: str(o.stderr, 'stderr', 64 * 1024) }),
      ...(o.load === undefined ? {} : { load: peerLoad(o.load) }),
      ...(o.retryAfterMs === undefined ? {} : { retryAfterMs: int(o.retryAfterMs, 'retryAfterMs', 0, MAX_TIMEOUT_MS * 4) })
    }
  }
  header(value, 'result')
  const t = obj(o.timings, 'timings')
  return {
    v: WIRE_VERSION,
    type: 'result',
    id: int(o.id, 'id'),
    output: bytes(o.output, 'output', MAX_IO_BYTES),
    warm: bool(o.warm, 'warm'),
    timings: {
      queueMs: num(t.queueMs, 'timings.queueMs'),
      fetchMs: num(t.fetchMs, 'timings.fetchMs'),
      runMs: num(t.runMs, 'timings.runMs'),
      ...(t.initMs === undefined ? {} : { initMs: num(t.initMs, 'timings.initMs') })
    },
    ...(o.load === undefined ? {} : { load: peerLoad(o.load) })
  }
}

export function validateFetchRequest (value: unknown): FetchChunkRequest {
  const o = header(value, 'fetch-chunk')
  return { v: WIRE_VERSION, type: 'fetch-chunk', cid: parseCid(str(o.cid, 'cid', 128)).toString() }
}

export function validateChunkHeader (value: unknown): ChunkHeader {
  const o = header(value, 'chunk-ok')
  return { v: WIRE_VERSION, type: 'chunk-ok', size: int(o.size, 'size', 1, MAX_CODE_BYTES) }
}

export function validateFetchChunk (value: unknown, max: number): FetchChunk {
  const o = header(value, 'chunk')
  return { v: WIRE_VERSION, type: 'chunk', data: bytes(o.data, 'data', max) }
}
