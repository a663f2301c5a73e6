import { test } from 'node:test'
import assert from 'node:assert/strict'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { decode, encode } from '../../protocol/codec.js'
import { decodeInvite, encodeInvite, inviteMacChecks, makeInvite, openRoster, ownerId, signRoster, validateJoinAnswer } from '../../protocol/roster.js'

const owner = await generateKeyPair('Ed25519')
const devices = await Promise.all([1, 2, 3].map(async () => peerIdFromPrivateKey(await generateKeyPair('Ed25519')).toString()))
const [a, b, c] = devices as [string, string, string]

test('a roster opens to what its owner signed, and names the owner by its id', async () => {
  const record = await signRoster(owner, { seq: 3, devices: [a, b], revoked: [c], issuedAt: 1000 })
  const roster = await openRoster(record)
  assert.deepEqual({ ...roster, record: undefined }, { owner: ownerId(owner.publicKey), seq: 3, devices: [a, b], revoked: [c], issuedAt: 1000, record: undefined })
  assert.deepEqual(roster?.record, record)
})

test('a roster whose devices were changed after signing does not open', async () => {
  const record = await signRoster(owner, { seq: 1, devices: [a], revoked: [] })
  const outer = decode(record, 1 << 16) as { body: Uint8Array }
  const body = decode(outer.body, 1 << 16) as { devices: string[] }
  body.devices.push(b)
  const forged = encode({ ...outer, body: encode(body) })
  await assert.rejects(openRoster(forged), { name: 'InvalidMessageError', message: /bad signature/ })
})

test('a roster signed by another key opens as that owner\'s, not this one\'s', async () => {
  const other = await generateKeyPair('Ed25519')
  const roster = await openRoster(await signRoster(other, { seq: 9, devices: [a], revoked: [] }))
  assert.equal(roster?.owner, ownerId(other.publicKey))
  assert.notEqual(roster?.owner, ownerId(owner.publicKey))
})

test('a roster not wanted (not newer) is returned unchecked as undefined; a wanted one is checked', async () => {
  const record = await signRoster(owner, { seq: 2, devices: [a], revoked: [] })
  assert.equal(await openRoster(record, (r) => r.seq > 2), undefined)
  assert.equal((await openRoster(record, (r) => r.seq > 1))?.seq, 2)
})

test('a roster listing something that is not a peer id is refused when signed and when opened', async () => {
  await assert.rejects(signRoster(owner, { seq: 1, devices: ['not-a-peer'], revoked: [] }), /bad peer id in devices/)
  await assert.rejects(openRoster(encode({ v: 1, type: 'signed-roster', body: encode({ v: 1, type: 'roster', owner: new Uint8Array(0), seq: 1, devices: ['x'], revoked: [], issuedAt: 0 }), signature: new Uint8Array(64) })), { name: 'InvalidMessageError' })
})

test('an invite token carries its parts through encoding, and its MAC checks with the owner key only', async () => {
  const invite = makeInvite(owner, { swarmKey: new Uint8Array(32).fill(7), addrs: [`/ip4/192.168.1.20/tcp/4001/p2p/${a}`], nonce: new Uint8Array(16).fill(1), expiresAt: 1_900_000_000_000 })
  const token = encodeInvite(invite)
  assert.match(token, /^edge-join-[A-Za-z0-9_-]+$/)
  const back = decodeInvite(`  ${token}\n`)
  assert.equal(back.owner, ownerId(owner.publicKey))
  assert.deepEqual(back.addrs, invite.addrs)
  assert.deepEqual(Buffer.from(back.swarmKey), Buffer.from(invite.swarmKey))
  assert.equal(inviteMacChecks(owner, back.nonce, back.expiresAt, back.mac), true)
  // Another owner key, a later expiry or another nonce: the MAC no longer checks.
  assert.equal(inviteMacChecks(await generateKeyPair('Ed25519'), back.nonce, back.expiresAt, back.mac), false)
  assert.equal(inviteMacChecks(owner, back.nonce, back.expiresAt + 1, back.mac), false)
  assert.equal(inviteMacChecks(owner, new Uint8Array(16), back.expiresAt, back.mac), false)
})

test('a damaged or foreign token is refused with a line saying what to do', () => {
  const token = encodeInvite(makeInvite(owner, { swarmKey: new Uint8Array(32), addrs: [`/ip4/10.0.0.1/tcp/4001/p2p/${a}`], nonce: new Uint8Array(16), expiresAt: 1 }))
  assert.throws(() => decodeInvite('hello'), /not an invite token .*copy the whole line/)
  assert.throws(() => decodeInvite(token.slice(0, 60)), /damaged .*copy the whole line/)
  assert.throws(() => decodeInvite(`${token}!`), /not an invite token/)
  const wrongVersion = 'edge-join-' + Buffer.from(encode({ v: 99, type: 'invite' })).toString('base64url')
  assert.throws(() => decodeInvite(wrongVersion), /another version \(99\)/)
})

test('a join answer is a welcome with a roster and keys, or a refusal with a message; anything else is invalid', () => {
  assert.equal(validateJoinAnswer({ v: 1, type: 'refused', message: 'no' }).type, 'refused')
  assert.equal(validateJoinAnswer({ v: 1, type: 'welcome', roster: new Uint8Array(4), trusted: [a] }).type, 'welcome')
  assert.throws(() => validateJoinAnswer({ v: 1, type: 'welcome', roster: new Uint8Array(4), trusted: ['../etc'] }), /bad trusted keys/)
  assert.throws(() => validateJoinAnswer({ v: 1, type: 'admin' }), /type admin/)
  assert.throws(() => validateJoinAnswer({ v: 1, type: 'welcome', roster: 'x', trusted: [] }), { name: 'InvalidMessageError' })
})
