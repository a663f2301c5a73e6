import { createHash, createHmac, timingSafeEqual } from 'node:crypto'
import { publicKeyFromProtobuf, publicKeyToProtobuf } from '@libp2p/crypto/keys'
import { peerIdFromPublicKey } from '@libp2p/peer-id'
import type { PrivateKey, PublicKey } from '@libp2p/interface'
import { decode, encode } from './codec.js'
import { InvalidMessageError } from './errors.js'
import { verifies } from './manifest.js'
import { MAX_ROSTER_BYTES, WIRE_VERSION } from './protocols.js'

/**
 * One owner, many devices. An owner key (Ed25519, kept on the device that founded the swarm)
 * signs the roster: the devices (peer ids) that are its own, and those it revoked. Every device
 * trusts its owner's key and so every device on the newest roster it has seen — as peers to call
 * and serve, and as deployers. A roster only ever moves forward (a higher seq), so an old one
 * replayed changes nothing. A device joins with an invite: the swarm key, the inviting device's
 * addresses and the owner's id, with a one-time secret the owner checks (it MACs the secret and
 * the expiry with a key only it holds), and answers with the roster that now lists the device.
 */

export const MAX_ROSTER_DEVICES = 512
const INVITE_PREFIX = 'edge-join-'
const PEER_ID = /^[1-9A-HJ-NP-Za-km-z]{40,64}$/

export interface Roster {
  /** The owner as a peer id string. */
  owner: string
  seq: number
  /** Devices of the owner (peer ids), the owner's founding device first. */
  devices: string[]
  /** Devices that were the owner's and are no more: never admitted again. */
  revoked: string[]
  issuedAt: number
  /** The signed record, as it travels and is stored. */
  record: Uint8Array
}

type Obj = Record<string, unknown>

function fail (what: string): never {
  throw new InvalidMessageError(`invalid roster: ${what}`)
}

function obj (v: unknown, what: string): Obj {
  if (v === null || typeof v !== 'object' || Array.isArray(v) || v instanceof Uint8Array) fail(`${what} is not a map`)
  return v as Obj
}

function ids (v: unknown, what: string): string[] {
  if (!Array.isArray(v) || v.length > MAX_ROSTER_DEVICES) fail(`bad ${what}`)
  for (const id of v) if (typeof id !== 'string' || !PEER_ID.test(id)) fail(`bad peer id in ${what}`)
  return v as string[]
}

function bytes (v: unknown, what: string, max: number): Uint8Array {
  if (!(v instanceof Uint8Array) || v.byteLength > max) fail(`bad ${what}`)
  return v
}

function int (v: unknown, what: string): number {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) fail(`bad ${what}`)
  return v
}

/** The owner key's id, as rosters, invites and `edge-agent trust list` name it. */
export function ownerId (key: PublicKey): string {
  return peerIdFromPublicKey(key).toString()
}

export async function signRoster (key: PrivateKey, roster: { seq: number, devices: string[], revoked: string[], issuedAt?: number }): Promise<Uint8Array> {
  const body = { v: WIRE_VERSION, type: 'roster', owner: publicKeyToProtobuf(key.publicKey), seq: roster.seq, devices: roster.devices, revoked: roster.revoked, issuedAt: roster.issuedAt ?? Date.now() }
  ids(body.devices, 'devices')
  ids(body.revoked, 'revoked')
  const bodyBytes = encode(body)
  const record = encode({ v: WIRE_VERSION, type: 'signed-roster', body: bodyBytes, signature: await key.sign(bodyBytes) })
  if (record.byteLength > MAX_ROSTER_BYTES) throw new InvalidMessageError(`a roster of ${body.devices.length + body.revoked.length} devices is over ${MAX_ROSTER_BYTES} bytes`)
  return record
}

/**
 * Decodes a roster record and checks its schema and the owner's signature. With `wanted`, a
 * roster it refuses (not newer than the one held) is returned as undefined, unchecked: a hello
 * on every connection carries the roster, and most carry the one held already.
 */
export async function openRoster (record: Uint8Array, wanted?: (r: { owner: string, seq: number }) => boolean): Promise<Roster | undefined> {
  const outer = obj(decode(record, MAX_ROSTER_BYTES), 'record')
  if (outer.v !== WIRE_VERSION || outer.type !== 'signed-roster') fail('not a signed roster of this version')
  const bodyBytes = bytes(outer.body, 'body', MAX_ROSTER_BYTES)
  const signature = bytes(outer.signature, 'signature', 128)
  const body = obj(decode(bodyBytes, MAX_ROSTER_BYTES), 'body')
  if (body.v !== WIRE_VERSION || body.type !== 'roster') fail('not a roster of this version')
  let key: PublicKey
  try {
    key = publicKeyFromProtobuf(bytes(body.owner, 'owner key', 256))
  } catch (err) {
    throw new InvalidMessageError('invalid roster: unreadable owner key', { cause: err })
  }
  if (key.type !== 'Ed25519') fail(`owner key is ${key.type}, not Ed25519`)
  const roster = { owner: ownerId(key), seq: int(body.seq, 'seq'), devices: ids(body.devices, 'devices'), revoked: ids(body.revoked, 'revoked'), issuedAt: int(body.issuedAt, 'issuedAt'), record }
  if (wanted !== undefined && !wanted(roster)) return undefined
  if (!(await verifies(key, bodyBytes, signature))) fail('bad signature')
  return roster
}

/** What `edge-agent invite` prints: all a new device needs to join (`edge-agent init --join TOKEN`). */
export interface Invite {
  /** The swarm's pre-shared key (pnet), its 32 bytes. */
  swarmKey: Uint8Array
  /** The inviting device's dialable addresses, each ending in /p2p/ID. */
  addrs: string[]
  owner: string
  nonce: Uint8Array
  expiresAt: number
  /** The owner's MAC over nonce and expiry: what the inviting device checks. */
  mac: Uint8Array
}

/** The key of invites' MACs: derived from the owner key, so that only its holder makes and checks them. */
function inviteKey (owner: PrivateKey): Buffer {
  return createHash('sha256').update('edge-agent/invite/1\0').update(owner.raw).digest()
}

function macOf (owner: PrivateKey, nonce: Uint8Array, expiresAt: number): Buffer {
  const expiry = Buffer.alloc(8)
  expiry.writeBigUInt64BE(BigInt(expiresAt))
  return createHmac('sha256', inviteKey(owner)).update(nonce).update(expiry).digest()
}

export function makeInvite (owner: PrivateKey, init: { swarmKey: Uint8Array, addrs: string[], nonce: Uint8Array, expiresAt: number }): Invite {
  return { ...init, owner: ownerId(owner.publicKey), mac: macOf(owner, init.nonce, init.expiresAt) }
}

/** Whether this owner key made the invite with this nonce and expiry. Says nothing of the expiry itself. */
export function inviteMacChecks (owner: PrivateKey, nonce: Uint8Array, expiresAt: number, mac: Uint8Array): boolean {
  const want = macOf(owner, nonce, expiresAt)
  return mac.byteLength === want.byteLength && timingSafeEqual(mac, want)
}

export function encodeInvite (invite: Invite): string {
  const cbor = encode({ v: WIRE_VERSION, type: 'invite', swarmKey: invite.swarmKey, addrs: invite.addrs, owner: invite.owner, nonce: invite.nonce, expiresAt: invite.expiresAt, mac: invite.mac })
  return INVITE_PREFIX + Buffer.from(cbor).toString('base64url')
}

/** Parses a token as `edge-agent invite` prints it; throws InvalidMessageError saying what is wrong with it. */
export function decodeInvite (token: string): Invite {
  const text = token.trim()
  if (!text.startsWith(INVITE_PREFIX) || !/^[A-Za-z0-9_-]+$/.test(text.slice(INVITE_PREFIX.length))) throw new InvalidMessageError(`not an invite token (they start with '${INVITE_PREFIX}'): copy the whole line 'edge-agent invite' printed`)
  let o: Obj
  try {
    o = obj(decode(Buffer.from(text.slice(INVITE_PREFIX.length), 'base64url'), 4096), 'invite')
  } catch {
    throw new InvalidMessageError('the invite token is damaged (cut short or mistyped): copy the whole line \'edge-agent invite\' printed')
  }
  if (o.v !== WIRE_VERSION || o.type !== 'invite') throw new InvalidMessageError(`an invite of another version (${String(o.v)}): invite from a device with this version of edge-agent`)
  const bad = (what: string): never => { throw new InvalidMessageError(`the invite token is damaged (${what}): copy the whole line 'edge-agent invite' printed`) }
  if (!(o.swarmKey instanceof Uint8Array) || o.swarmKey.byteLength !== 32) bad('swarm key')
  if (!Array.isArray(o.addrs) || o.addrs.length === 0 || o.addrs.length > 16 || o.addrs.some(a => typeof a !== 'string' || a.length > 512)) bad('addresses')
  if (typeof o.owner !== 'string' || !PEER_ID.test(o.owner)) bad('owner')
  if (!(o.nonce instanceof Uint8Array) || o.nonce.byteLength !== 16) bad('nonce')
  if (typeof o.expiresAt !== 'number' || !Number.isSafeInteger(o.expiresAt) || o.expiresAt < 0) bad('expiry')
  if (!(o.mac instanceof Uint8Array) || o.mac.byteLength !== 32) bad('mac')
  return { swarmKey: o.swarmKey as Uint8Array, addrs: o.addrs as string[], owner: o.owner as string, nonce: o.nonce as Uint8Array, expiresAt: o.expiresAt as number, mac: o.mac as Uint8Array }
}

/** A joining device's one message on /edge/join/1: the invite's secret part. */
export interface JoinRequest {
  v: number
  type: 'join'
  nonce: Uint8Array
  expiresAt: number
  mac: Uint8Array
}

/** The answer: the roster that lists the device and the deployer keys the owner's device trusts, or why not. */
export type JoinAnswer =
  | { v: number, type: 'welcome', roster: Uint8Array, trusted: string[] }
  | { v: number, type: 'refused', message: string }

export function validateJoinRequest (value: unknown): JoinRequest {
  const o = obj(value, 'join request')
  if (o.v !== WIRE_VERSION || o.type !== 'join') throw new InvalidMessageError('invalid join request: not a join of this version')
  if (!(o.nonce instanceof Uint8Array) || o.nonce.byteLength !== 16) throw new InvalidMessageError('invalid join request: bad nonce')
  if (typeof o.expiresAt !== 'number' || !Number.isSafeInteger(o.expiresAt) || o.expiresAt < 0) throw new InvalidMessageError('invalid join request: bad expiry')
  if (!(o.mac instanceof Uint8Array) || o.mac.byteLength !== 32) throw new InvalidMessageError('invalid join request: bad mac')
  return { v: WIRE_VERSION, type: 'join', nonce: o.nonce, expiresAt: o.expiresAt, mac: o.mac }
}

export function validateJoinAnswer (value: unknown): JoinAnswer {
  const o = obj(value, 'join answer')
  if (o.v !== WIRE_VERSION) throw new InvalidMessageError(`invalid join answer: version ${String(o.v)}`)
  if (o.type === 'refused') {
    if (typeof o.message !== 'string' || o.message.length > 1024) throw new InvalidMessageError('invalid join answer: bad message')
    return { v: WIRE_VERSION, type: 'refused', message: o.message }
  }
  if (o.type !== 'welcome') throw new InvalidMessageError(`invalid join answer: type ${String(o.type)}`)
  if (!Array.isArray(o.trusted) || o.trusted.length > 64 || o.trusted.some(k => typeof k !== 'string' || !PEER_ID.test(k))) throw new InvalidMessageError('invalid join answer: bad trusted keys')
  return { v: WIRE_VERSION, type: 'welcome', roster: bytes(o.roster, 'roster', MAX_ROSTER_BYTES), trusted: o.trusted as string[] }
}
