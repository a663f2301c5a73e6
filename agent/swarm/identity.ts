import { chmodSync, existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { generateKeyPair, privateKeyFromProtobuf, privateKeyToProtobuf } from '@libp2p/crypto/keys'
import { generateKey } from '@libp2p/pnet'
import type { PrivateKey } from '@libp2p/interface'
import { ownerId, signRoster } from '../../protocol/roster.js'
import { ConfigError } from '../errors.js'

/** The agent's persisted Ed25519 identity and the swarm's pre-shared key (pnet). */
export const PEER_KEY_FILE = 'peer.key'
export const SWARM_KEY_FILE = 'swarm.key'
/** The owner key (roster.ts), on the device that founded the swarm only; and the newest roster of the owner's devices, on every device. */
export const OWNER_KEY_FILE = 'owner.key'
export const ROSTER_FILE = 'roster'

export async function createPeerKey (dataDir: string, key?: PrivateKey): Promise<PrivateKey> {
  const file = join(dataDir, PEER_KEY_FILE)
  if (existsSync(file)) return loadPeerKey(dataDir)
  key ??= await generateKeyPair('Ed25519')
  mkdirSync(dataDir, { recursive: true, mode: 0o700 })
  writeFileSync(file, privateKeyToProtobuf(key), { mode: 0o600 })
  return key
}

/**
 * Makes this device the owner of a swarm of its own: an owner key, and a roster listing this
 * device alone. Returns the owner's id. A device that founds a swarm does this at init; one that
 * joins another's (`init --join`) never holds an owner key.
 */
export async function createOwner (dataDir: string, deviceId: string): Promise<string> {
  const file = join(dataDir, OWNER_KEY_FILE)
  const key = existsSync(file) ? loadOwnerKey(dataDir) as PrivateKey : await generateKeyPair('Ed25519')
  if (!existsSync(file)) writeFileSync(file, privateKeyToProtobuf(key), { mode: 0o600, flag: 'wx' })
  writeRoster(dataDir, await signRoster(key, { seq: 1, devices: [deviceId], revoked: [] }))
  return ownerId(key.publicKey)
}

/** The owner key, when this device holds it. */
export function loadOwnerKey (dataDir: string): PrivateKey | undefined {
  const file = join(dataDir, OWNER_KEY_FILE)
  if (!existsSync(file)) return undefined
  try {
    return privateKeyFromProtobuf(readFileSync(file))
  } catch (err) {
    throw new ConfigError(`cannot read the owner key ${file}: ${(err as Error).message}`, { cause: err })
  }
}

/** The roster as last stored here (signed bytes), if any. */
export function loadRoster (dataDir: string): Uint8Array | undefined {
  const file = join(dataDir, ROSTER_FILE)
  return existsSync(file) ? readFileSync(file) : undefined
}

/** Stores a roster whole or not at all (a kill mid-write leaves the old one). */
export function writeRoster (dataDir: string, record: Uint8Array): void {
  const file = join(dataDir, ROSTER_FILE)
  writeFileSync(`${file}.tmp`, record, { mode: 0o600 })
  renameSync(`${file}.tmp`, file)
}

export function loadPeerKey (dataDir: string): PrivateKey {
  const file = join(dataDir, PEER_KEY_FILE)
  try {
    return privateKeyFromProtobuf(readFileSync(file))
  } catch (err) {
    throw new ConfigError(`cannot read the peer key ${file}: ${(err as Error).message}`, { cause: err })
  }
}

export function newSwarmKey (): Uint8Array {
  const key = new Uint8Array(95)
  generateKey(key)
  return key
}

/** Checks the pnet key format ("/key/swarm/psk/1.0.0/", "/base16/", 64 hex digits). */
export function validateSwarmKey (key: Uint8Array, source: string): Uint8Array {
  const lines = Buffer.from(key).toString('utf8').trim().split(/\r?\n/)
  if (lines.length !== 3 || lines[0] !== '/key/swarm/psk/1.0.0/' || lines[1] !== '/base16/' || !/^[0-9a-fA-F]{64}$/.test(lines[2] ?? '')) {
    throw new ConfigError(`${source} is not a swarm key (expected the 3-line /key/swarm/psk/1.0.0/ format made by 'edge-agent init')`)
  }
  return key
}

/** The 32 bytes of a swarm key (as an invite carries them). */
export function swarmKeyBytes (key: Uint8Array): Uint8Array {
  return Buffer.from(Buffer.from(key).toString('utf8').trim().split(/\r?\n/)[2] ?? '', 'hex')
}

/** A swarm key file's content from its 32 bytes. */
export function swarmKeyFromBytes (raw: Uint8Array): Uint8Array {
  return new TextEncoder().encode(`/key/swarm/psk/1.0.0/\n/base16/\n${Buffer.from(raw).toString('hex')}`)
}

export function writeSwarmKey (dataDir: string, key: Uint8Array): void {
  const file = join(dataDir, SWARM_KEY_FILE)
  writeFileSync(file, key, { mode: 0o600 })
  chmodSync(file, 0o600)
}

export function loadSwarmKey (dataDir: string): Uint8Array {
  const file = join(dataDir, SWARM_KEY_FILE)
  if (!existsSync(file)) throw new ConfigError(`no swarm key at ${file}: run 'edge-agent init' or copy the swarm's key there`)
  return validateSwarmKey(readFileSync(file), file)
}
