import { publicKeyFromProtobuf, publicKeyToProtobuf } from '@libp2p/crypto/keys'
import { peerIdFromPublicKey } from '@libp2p/peer-id'
import type { PrivateKey, PublicKey } from '@libp2p/interface'
import { LRUCache } from 'lru-cache'
import { decode, encode } from './codec.js'
import { InvalidMessageError } from './errors.js'
import { CONTAINER_RUNTIMES, RuntimeKind, type ContainerOptions } from './messages.js'
import { parseCid } from './chunks.js'
import { ENTRY_PATH, FUNCTION_NAME, validateContainerOptions, validateEnv } from './validate.js'
import { MAX_CODE_BYTES, WIRE_VERSION } from './protocols.js'

/**
 * Signed function manifests: what a function is (name, version, runtime, limits, code CIDs) and who
 * deployed it. A record carries the manifest's exact CBOR bytes and an Ed25519 signature over them,
 * so verification needs no canonical re-encoding. Tombstones (deletes) are signed records too.
 */

export const MAX_RECORD_BYTES = 16 * 1024
/** Limits of a function deployed without any. */
export const DEFAULT_MEMORY_BYTES = 64 * 1024 * 1024
export const DEFAULT_TIMEOUT_MS = 5000
/** Node and python need more than a WASM module: the default, and the least, for container functions. */
export const DEFAULT_CONTAINER_MEMORY_BYTES = 128 * 1024 * 1024
export const MIN_CONTAINER_MEMORY_BYTES = 16 * 1024 * 1024
const MAX_CHUNKS = 256

export interface Limits {
  memoryBytes: number
  timeoutMs: number
  /** Calls of this function that may run at once on one agent (0 = as many as there are slots). */
  concurrency: number
}

export interface Manifest {
  v: number
  type: 'manifest'
  name: string
  version: number
  runtime: RuntimeKind
  /** Entry point: `_start` for WASI commands. */
  entry: string
  limits: Limits
  labels: Record<string, string>
  env: Record<string, string>
  /** CIDs of the code's chunks, in order. */
  chunks: string[]
  size: number
  /** sha256 of the whole artifact, hex. */
  sha256: string
  deployedAt: number
  /** Deployer's public key (libp2p protobuf encoding). */
  deployer: Uint8Array
  /** Container runtimes: how the function's containers run. */
  container?: ContainerOptions
}

export interface Tombstone {
  v: number
  type: 'tombstone'
  name: string
  /** Deletes every version below this one; ranks above them in the selector. */
  version: number
  deployedAt: number
  deployer: Uint8Array
}

export type ManifestBody = Manifest | Tombstone

export interface SignedRecord<T extends ManifestBody = ManifestBody> {
  body: T
  /** The exact bytes that were signed. */
  bytes: Uint8Array
  signature: Uint8Array
  /** The deployer as a peer id string (what `edge-agent trust add` takes). */
  signer: string
}

type Obj = Record<string, unknown>

function fail (what: string): never {
  throw new InvalidMessageError(`invalid manifest record: ${what}`)
}

function obj (v: unknown, what: string): Obj {
  if (v === null || typeof v !== 'object' || Array.isArray(v) || v instanceof Uint8Array) fail(`${what} is not a map`)
  return v as Obj
}

function int (v: unknown, what: string, min: number, max: number): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) fail(`${what} out of range`)
  return v
}

function str (v: unknown, what: string, max: number, pattern?: RegExp): string {
  if (typeof v !== 'string' || v.length > max || (pattern !== undefined && !pattern.test(v))) fail(`bad ${what}`)
  return v
}

function strings (v: unknown, what: string): Record<string, string> {
  const o = obj(v, what)
  if (Object.keys(o).length > 64) fail(`too many ${what}`)
  const out: Record<string, string> = {}
  for (const [k, val] of Object.entries(o)) out[str(k, `${what} key`, 128)] = str(val, `${what} value`, 1024)
  return out
}

function bytes (v: unknown, what: string, max: number): Uint8Array {
  if (!(v instanceof Uint8Array) || v.byteLength > max) fail(`bad ${what}`)
  return v
}

function validateBody (value: unknown): ManifestBody {
  const o = obj(value, 'body')
  if (o.v !== WIRE_VERSION) fail(`unsupported version ${String(o.v)}`)
  const name = str(o.name, 'name', 63, FUNCTION_NAME)
  const version = int(o.version, 'version', 1, Number.MAX_SAFE_INTEGER)
  const deployedAt = int(o.deployedAt, 'deployedAt', 0, Number.MAX_SAFE_INTEGER)
  const deployer = bytes(o.deployer, 'deployer key', 256)
  if (o.type === 'tombstone') return { v: WIRE_VERSION, type: 'tombstone', name, version, deployedAt, deployer }
  if (o.type !== 'manifest') fail(`unknown type ${String(o.type)}`)
  if (!Object.values(RuntimeKind).includes(o.runtime as RuntimeKind)) fail(`unknown runtime ${String(o.runtime)}`)
  const inContainer = CONTAINER_RUNTIMES.includes(o.runtime as RuntimeKind)
  let env: Record<string, string>
  let container: ContainerOptions | undefined
  try {
    env = validateEnv(o.env)
    if (o.container !== undefined) container = validateContainerOptions(o.container)
  } catch (err) {
    fail((err as Error).message.replace(/^invalid /, ''))
  }
  const limits = obj(o.limits, 'limits')
  const chunks = o.chunks
  if (!Array.isArray(chunks) || chunks.length === 0 || chunks.length > MAX_CHUNKS) fail('bad chunk list')
  for (const c of chunks) parseCid(str(c, 'chunk CID', 128))
  return {
    v: WIRE_VERSION,
    type: 'manifest',
    name,
    version,
    runtime: o.runtime as RuntimeKind,
    entry: inContainer ? str(o.entry, 'entry', 255, ENTRY_PATH) : str(o.entry, 'entry', 256),
    limits: {
      memoryBytes: int(limits.memoryBytes, 'limits.memoryBytes', 65536, 4 * 1024 ** 3),
      timeoutMs: int(limits.timeoutMs, 'limits.timeoutMs', 1, 15 * 60_000),
      concurrency: int(limits.concurrency, 'limits.concurrency', 0, 4096)
    },
    labels: strings(o.labels, 'labels'),
    env,
    chunks: chunks as string[],
    size: int(o.size, 'size', 1, MAX_CODE_BYTES),
    sha256: str(o.sha256, 'sha256', 64, /^[0-9a-f]{64}$/),
    deployedAt,
    deployer,
    ...(container === undefined ? {} : { container })
  }
}

/** Signs a manifest or tombstone with the deployer's key and encodes the DHT record. */
export async function signRecord (body: Omit<Manifest, 'deployer'> | Omit<Tombstone, 'deployer'>, key: PrivateKey): Promise<Uint8Array> {
  const full = { ...body, deployer: publicKeyToProtobuf(key.publicKey) }
  validateBody(full)
  const bodyBytes = encode(full)
  const signature = await key.sign(bodyBytes)
  const record = encode({ v: WIRE_VERSION, type: 'signed', body: bodyBytes, signature })
  if (record.byteLength > MAX_RECORD_BYTES) throw new InvalidMessageError(`manifest record of ${record.byteLength} bytes exceeds ${MAX_RECORD_BYTES}`)
  return record
}

/**
 * Records opened lately, by their exact bytes. A DHT look-up receives the same record from every
 * peer it asks, and kad-dht's validator and the caller each open it: in a 10-agent swarm that was
 * ~20 Ed25519 verifications per look-up, 9 % of a look-up's CPU. Only records that passed are kept;
 * what they open to is shared, so it is read-only.
 */
const opened = new LRUCache<string, SignedRecord>({ max: 256 })

/** Decodes a record and checks its size, schema and signature. Says nothing of trust. */
export async function openRecord (record: Uint8Array): Promise<SignedRecord> {
  if (record.byteLength > MAX_RECORD_BYTES) return await verifyRecord(record)
  const key = Buffer.from(record.buffer, record.byteOffset, record.byteLength).toString('latin1')
  const known = opened.get(key)
  if (known !== undefined) return known
  const fresh = await verifyRecord(record)
  opened.set(key, fresh)
  return fresh
}

/** Whether `signature` signs `data` under `key`: false, not a throw, for a signature of the wrong length or form. */
export async function verifies (key: PublicKey, data: Uint8Array, signature: Uint8Array): Promise<boolean> {
  try {
    return await key.verify(data, signature)
  } catch {
    return false
  }
}

async function verifyRecord (record: Uint8Array): Promise<SignedRecord> {
  const outer = obj(decode(record, MAX_RECORD_BYTES), 'record')
  if (outer.v !== WIRE_VERSION || outer.type !== 'signed') fail('not a signed record of this version')
  const bodyBytes = bytes(outer.body, 'body', MAX_RECORD_BYTES)
  const signature = bytes(outer.signature, 'signature', 512)
  const body = validateBody(decode(bodyBytes, MAX_RECORD_BYTES))
  let key: PublicKey
  try {
    key = publicKeyFromProtobuf(body.deployer)
  } catch (err) {
    throw new InvalidMessageError('invalid manifest record: unreadable deployer key', { cause: err })
  }
  if (key.type !== 'Ed25519') fail(`deployer key is ${key.type}, not Ed25519`)
  if (!(await verifies(key, bodyBytes, signature))) fail('bad signature')
  return { body, bytes: bodyBytes, signature, signer: peerIdFromPublicKey(key).toString() }
}
