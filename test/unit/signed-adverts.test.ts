import { test } from 'node:test'
import assert from 'node:assert/strict'
import { generateKeyPair, publicKeyToProtobuf } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { openSignedAdvert, parseAdvert, signAdvert } from '../../agent/swarm/adverts.js'
import { ADVERTS_TOPIC, encode, WIRE_VERSION, type Advert } from '../../protocol/index.js'
import type { Message } from '@libp2p/gossipsub'

// gossipsub's own signer (not exported by the package): the check must accept what it signs.
const { buildRawMessage } = await import(new URL('../../../node_modules/@libp2p/gossipsub/dist/src/utils/buildRawMessage.js', import.meta.url).href) as {
  buildRawMessage: (config: unknown, topic: string, original: Uint8Array, transformed: Uint8Array) => Promise<{ msg: Message }>
}

async function published (advertFor?: (self: string) => Partial<Advert>): Promise<{ message: Message, advert: Advert }> {
  const privateKey = await generateKeyPair('Ed25519')
  const peerId = peerIdFromPrivateKey(privateKey)
  const advert: Advert = {
    v: WIRE_VERSION, type: 'advert', peerId: peerId.toString(), addrs: ['/ip4/127.0.0.1/tcp/1'], arch: 'x64', platform: 'linux', cpus: 2, memTotal: 1, memFree: 1,
    runtimes: [{ kind: 'wasm', slots: 2, busy: 0 }], queue: 0, labels: {}, warm: [], functions: [], seq: 1, sentAt: Date.now(), ...advertFor?.(peerId.toString())
  }
  const data = encode(advert)
  const { msg } = await buildRawMessage({ type: 0, author: peerId, key: publicKeyToProtobuf(privateKey.publicKey), privateKey }, ADVERTS_TOPIC, data, data)
  return { message: msg, advert }
}

test('an advert as gossipsub signed it can be passed on and checked by anyone', async () => {
  const { message, advert } = await published()
  const { signed } = parseAdvert(message)
  assert.deepEqual(await openSignedAdvert(signed), advert)
})

test('a passed-on advert with its bytes, sequence number or signature changed is refused', async () => {
  const { message } = await published()
  const { signed } = parseAdvert(message)
  const flip = (b: Uint8Array, i: number): Uint8Array => { const c = Uint8Array.from(b); c[i] = (c[i] as number) ^ 1; return c }
  await assert.rejects(openSignedAdvert({ ...signed, signature: flip(signed.signature, 3) }), /bad signature/)
  await assert.rejects(openSignedAdvert({ ...signed, seqno: flip(signed.seqno, 7) }), /bad signature/)
  await assert.rejects(openSignedAdvert({ ...signed, data: flip(signed.data, signed.data.byteLength - 1) }))
})

test('a passed-on advert the receiver does not want is decoded but not checked; one it wants is checked', async () => {
  const { message, advert } = await published()
  const { signed } = parseAdvert(message)
  const forged = { ...signed, signature: new Uint8Array(64) }
  const seen: string[] = []
  assert.equal(await openSignedAdvert(forged, (a) => { seen.push(a.peerId); return false }), undefined)
  assert.deepEqual(seen, [advert.peerId])
  await assert.rejects(openSignedAdvert(forged, () => true), /bad signature/)
  assert.deepEqual(await openSignedAdvert(signed, () => true), advert)
})

test('an advert signed by one peer that describes another is refused', async () => {
  const other = peerIdFromPrivateKey(await generateKeyPair('Ed25519')).toString()
  const { message } = await published(() => ({ peerId: other }))
  assert.throws(() => parseAdvert(message), /not signed by the peer it describes/)
  // Passed on by a third agent, the same bytes fail the check against the described peer's key.
  const seqno = new Uint8Array(8)
  new DataView(seqno.buffer).setBigUint64(0, (message as Message & { sequenceNumber: bigint }).sequenceNumber, false)
  await assert.rejects(openSignedAdvert({ data: message.data, seqno, signature: (message as Message & { signature: Uint8Array }).signature }), /bad signature/)
})

test('an agent\'s own advert, signed for a hello, checks like a gossiped one; signed with another key it does not', async () => {
  const privateKey = await generateKeyPair('Ed25519')
  const other = await generateKeyPair('Ed25519')
  const peerId = peerIdFromPrivateKey(privateKey).toString()
  const advert: Advert = {
    v: WIRE_VERSION, type: 'advert', peerId, addrs: [], arch: 'x64', platform: 'linux', cpus: 2, memTotal: 1, memFree: 1,
    runtimes: [{ kind: 'wasm', slots: 2, busy: 0 }], queue: 0, labels: {}, warm: [], functions: [], seq: 7, sentAt: Date.now()
  }
  assert.deepEqual(await openSignedAdvert(await signAdvert(advert, privateKey)), advert)
  await assert.rejects(openSignedAdvert(await signAdvert(advert, other)), /bad signature/)
})
