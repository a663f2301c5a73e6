import { existsSync, readFileSync, writeFileSync } from 'node:fs'
import type { PrivateKey } from '@libp2p/interface'
import type { DeploySettings } from './client.js'
import {
  chunk, CONTAINER_RUNTIMES, DEFAULT_CONTAINER_MEMORY_BYTES, DEFAULT_MEMORY_BYTES, DEFAULT_TIMEOUT_MS, parseBytes, parseDuration, RuntimeKind, signRecord, WIRE_VERSION
} from '../protocol/index.js'
import { UserError } from './errors.js'

/**
 * Deployer keys (`edge deploy --key`): an Ed25519 key of its own, kept by whoever deploys, whose
 * id agents trust with `edge-agent trust add`. Manifests and tombstones are signed here, by the
 * CLI: the private key never reaches an agent.
 */

export async function createDeployerKey (file: string): Promise<string> {
  if (existsSync(file)) throw new UserError(`${file} exists: a deployer key is never overwritten (remove it first, or choose another file)`)
  const { generateKeyPair, privateKeyToProtobuf } = await import('@libp2p/crypto/keys')
  const key = await generateKeyPair('Ed25519')
  writeFileSync(file, privateKeyToProtobuf(key), { mode: 0o600, flag: 'wx' })
  return await keyId(key)
}

export async function loadDeployerKey (file: string): Promise<PrivateKey> {
  if (!existsSync(file)) throw new UserError(`no deployer key at ${file}: make one with 'edge key create ${file}'`)
  const { privateKeyFromProtobuf } = await import('@libp2p/crypto/keys')
  let key: PrivateKey
  try {
    key = privateKeyFromProtobuf(readFileSync(file))
  } catch (err) {
    throw new UserError(`${file} is not a deployer key (${(err as Error).message}): make one with 'edge key create FILE'`)
  }
  if (key.type !== 'Ed25519') throw new UserError(`${file} holds a ${key.type} key: deployer keys are Ed25519 ('edge key create FILE')`)
  return key
}

/** The key's id, as `edge-agent trust add` takes it. */
export async function keyId (key: PrivateKey): Promise<string> {
  const { peerIdFromPrivateKey } = await import('@libp2p/peer-id')
  return peerIdFromPrivateKey(key).toString()
}

/** Signs the manifest of `code` as version `version` of `name`, with the settings given (as `edge deploy` takes them). */
export async function signManifest (key: PrivateKey, name: string, version: number, code: Uint8Array, settings: DeploySettings & { entry: string }): Promise<Uint8Array> {
  const { createHash } = await import('node:crypto')
  const runtime = settings.runtime ?? RuntimeKind.wasm
  const inContainer = CONTAINER_RUNTIMES.includes(runtime)
  return await signRecord({
    v: WIRE_VERSION,
    type: 'manifest',
    name,
    version,
    runtime,
    entry: settings.entry,
    limits: {
      memoryBytes: settings.memory !== undefined ? parseBytes(settings.memory) : inContainer ? DEFAULT_CONTAINER_MEMORY_BYTES : DEFAULT_MEMORY_BYTES,
      timeoutMs: settings.timeout === undefined ? DEFAULT_TIMEOUT_MS : parseDuration(settings.timeout),
      concurrency: 0
    },
    labels: {},
    env: settings.env ?? {},
    ...(settings.container !== undefined ? { container: settings.container } : {}),
    chunks: chunk(code).map(c => c.cid.toString()),
    size: code.byteLength,
    sha256: createHash('sha256').update(code).digest('hex'),
    deployedAt: Date.now()
  }, key).catch((err: Error) => { throw new UserError(err.message) })
}

/** Signs a tombstone that deletes every version of `name` up to `version`. */
export async function signTombstone (key: PrivateKey, name: string, version: number): Promise<Uint8Array> {
  return await signRecord({ v: WIRE_VERSION, type: 'tombstone', name, version, deployedAt: Date.now() }, key)
}
