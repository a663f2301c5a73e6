import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { generateKeyPair, privateKeyFromProtobuf, privateKeyToProtobuf } from '@libp2p/crypto/keys'
import { generateKey } from '@libp2p/pnet'
import type { PrivateKey } from '@libp2p/interface'
import { ConfigError } from '../errors.js'

/** The agent's persisted Ed25519 identity and the swarm's pre-shared key (pnet). */
export const PEER_KEY_FILE = 'peer.key'
export const SWARM_KEY_FILE = 'swarm.key'

export async function createPeerKey (dataDir: string): Promise<PrivateKey> {
  const file = join(dataDir, PEER_KEY_FILE)
  if (existsSync(file)) return loadPeerKey(dataDir)
  const key = await generateKeyPair('Ed25519')
  mkdirSync(dataDir, { recursive: true, mode: 0o700 })
  writeFileSync(file, privateKeyToProtobuf(key), { mode: 0o600 })
  return key
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
