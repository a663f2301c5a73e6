import { test } from 'node:test'
import assert from 'node:assert/strict'
import fc from 'fast-check'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import {
  chunk, decode, encode, InvalidMessageError, MAX_GOSSIP_BYTES, MAX_HELLO_BYTES, MAX_INVOKE_FRAME_BYTES, MAX_RECORD_BYTES, MessageTooLargeError, openRecord, signRecord,
  validateAdvert, validateAnnouncement, validateChunkHeader, validateFetchChunk, validateFetchRequest, validateHello, validateInvokeFrame, validateInvokeResponse, WIRE_VERSION
} from '../../protocol/index.js'
import { openSignedAdvert, parseAdvert, signAdvert } from '../../agent/swarm/adverts.js'
import { parseAnnouncement, deployAnnouncement } from '../../agent/swarm/announcements.js'
import { specFor } from '../helpers.js'
import type { Message } from '@libp2p/gossipsub'

/**
 * The decoders of everything a peer sends, fed random and mutated inputs: each must return a
 * checked value or throw its validation error (InvalidMessageError, MessageTooLargeError), never
 * anything else. Seeded, so that a failure is found again: fast-check prints the seed and the
 * shrunk input.
 */
const SEED = 20261201
const RUNS = 1000

const key = await generateKeyPair('Ed25519')
const peerId = peerIdFromPrivateKey(key)
const code = Buffer.from('\0asm pretend code')
const spec = specFor('echo', code)
const record = await signRecord({
  v: WIRE_VERSION, type: 'manifest', name: 'echo', version: 1, runtime: 'wasm', entry: '_start', limits: { memoryBytes: spec.memoryBytes, timeoutMs: spec.timeoutMs, concurrency: 0 },
  labels: {}, env: {}, chunks: chunk(code).map(c => c.cid.toString()), size: code.byteLength, sha256: spec.sha256, deployedAt: spec.deployedAt
}, key)
const advert = {
  v: WIRE_VERSION, type: 'advert', peerId: peerId.toString(), addrs: ['/ip4/127.0.0.1/tcp/4001'], arch: 'x64', platform: 'linux', cpus: 2, memTotal: 1 << 30, memFree: 1 << 29,
  runtimes: [{ kind: 'wasm', slots: 2, busy: 0 }], queue: 0, labels: { site: 'lab' }, warm: [spec.sha256], functions: [{ name: 'echo', version: 1, sha256: spec.sha256 }], trusted: [], seq: 3, sentAt: 1_700_000_000_000
} as const
const signedAdvert = await signAdvert(advert as never, key)

/** A valid example of each message, the seed of mutations. */
const VALID: Record<string, unknown> = {
  advert,
  deploy: deployAnnouncement(spec, peerId.toString(), record, code, 1),
  delete: { v: WIRE_VERSION, type: 'delete', name: 'echo', version: 1, by: peerId.toString(), at: 1, record },
  invoke: { v: WIRE_VERSION, type: 'invoke', id: 7, fn: { name: 'echo', version: 1, sha256: spec.sha256 }, input: Buffer.from('hi'), deadlineMs: 1000, holders: [peerId.toString()], queue: true },
  cancel: { v: WIRE_VERSION, type: 'cancel', id: 7 },
  result: { v: WIRE_VERSION, type: 'result', id: 7, output: Buffer.from('hi'), warm: true, timings: { queueMs: 0, fetchMs: 0, runMs: 1 }, load: { slots: 2, busy: 1, queued: 0, yours: 1 } },
  error: { v: WIRE_VERSION, type: 'error', id: 7, code: 'BUSY', message: 'all slots busy', retryAfterMs: 10 },
  fetch: { v: WIRE_VERSION, type: 'fetch-chunk', cid: chunk(code)[0]?.cid.toString() },
  chunkOk: { v: WIRE_VERSION, type: 'chunk-ok', size: 17 },
  chunk: { v: WIRE_VERSION, type: 'chunk', data: code },
  hello: { v: WIRE_VERSION, type: 'hello', advert, peers: [{ peerId: peerId.toString(), addrs: ['/ip4/127.0.0.1/tcp/4001'] }], relays: [signedAdvert], knows: 3 }
}

function isRefusal (err: unknown): boolean {
  return err instanceof InvalidMessageError || err instanceof MessageTooLargeError
}

/** Runs a decoding; passes if it returns or refuses with its validation error. */
async function onlyRefuses (decoding: () => unknown): Promise<boolean> {
  try {
    await decoding()
    return true
  } catch (err) {
    if (isRefusal(err)) return true
    throw new Error(`threw ${(err as Error).name}: ${(err as Error).message}`, { cause: err })
  }
}

/** Any value CBOR carries: the leaves a hostile peer may put anywhere. */
const leaf = fc.oneof(
  fc.integer(), fc.double(), fc.bigInt({ min: -(2n ** 70n), max: 2n ** 70n }), fc.string({ maxLength: 40 }), fc.boolean(), fc.constant(null), fc.constant(undefined),
  fc.uint8Array({ maxLength: 64 }).map(b => Buffer.from(b)), fc.constantFrom(-1, 0, 2 ** 31, 2 ** 53, Number.MAX_SAFE_INTEGER + 2, Number.NaN, Infinity), fc.string({ maxLength: 600 })
)
const value = fc.letrec(tie => ({
  any: fc.oneof({ depthSize: 'small' }, leaf, fc.array(tie('any'), { maxLength: 6 }), fc.dictionary(fc.string({ maxLength: 12 }), tie('any'), { maxKeys: 6 }))
})).any

/** A copy of `message` with the value at one path (by indices into its keys) replaced. */
function replaced (message: unknown, path: number[], by: unknown): unknown {
  if (path.length === 0 || message === null || typeof message !== 'object' || message instanceof Uint8Array) return by
  const copy: Record<string, unknown> | unknown[] = Array.isArray(message) ? [...message] : { ...(message as Record<string, unknown>) }
  const keys = Object.keys(copy)
  if (keys.length === 0) return by
  const k = keys[(path[0] as number) % keys.length] as string
  ;(copy as Record<string, unknown>)[k] = replaced((copy as Record<string, unknown>)[k], path.slice(1), by)
  return copy
}

/** Bytes a peer might send in place of `message`: its encoding mutated, a field replaced, or noise. */
function inputsFor (message: unknown): fc.Arbitrary<Uint8Array> {
  const bytes = encode(message)
  const mutated = fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 }), fc.constantFrom('flip', 'insert', 'delete')), { minLength: 1, maxLength: 8 }).map(edits => {
    const out = [...bytes]
    for (const [at, byte, op] of edits) {
      const i = at % (out.length + 1)
      if (op === 'flip') out[i % out.length] = byte
      else if (op === 'insert') out.splice(i, 0, byte)
      else out.splice(i % out.length, 1)
    }
    return Uint8Array.from(out)
  })
  const truncated = fc.nat({ max: bytes.length }).map(n => bytes.subarray(0, n))
  const field = fc.tuple(fc.array(fc.nat(), { minLength: 1, maxLength: 4 }), value).map(([path, by]) => {
    try {
      return encode(replaced(message, path, by))
    } catch {
      return bytes
    }
  })
  return fc.oneof(mutated, truncated, field, field, fc.uint8Array({ maxLength: 256 }), value.map(v => { try { return encode(v) } catch { return new Uint8Array(0) } }))
}

const DECODERS: Array<[string, string[], (bytes: Uint8Array) => unknown]> = [
  ['advert', ['advert'], (b) => validateAdvert(decode(b, MAX_GOSSIP_BYTES))],
  ['announcement', ['deploy', 'delete'], (b) => validateAnnouncement(decode(b, MAX_GOSSIP_BYTES))],
  ['invoke frame', ['invoke', 'cancel'], (b) => validateInvokeFrame(decode(b, MAX_INVOKE_FRAME_BYTES))],
  ['invoke response', ['result', 'error'], (b) => validateInvokeResponse(decode(b, MAX_INVOKE_FRAME_BYTES))],
  ['fetch request', ['fetch'], (b) => validateFetchRequest(decode(b, 1024))],
  ['chunk header', ['chunkOk'], (b) => validateChunkHeader(decode(b, 1024))],
  ['chunk', ['chunk'], (b) => validateFetchChunk(decode(b, 1 << 20), 1 << 20)],
  ['hello', ['hello'], (b) => validateHello(decode(b, MAX_HELLO_BYTES))]
]

for (const [name, seeds, decoder] of DECODERS) {
  test(`the ${name} decoder returns or refuses, whatever it is fed`, async () => {
    for (const s of seeds) assert.ok(decoder(encode(VALID[s])), `the valid ${s} decodes`)
    await fc.assert(fc.asyncProperty(fc.oneof(...seeds.map(s => inputsFor(VALID[s]))), async (bytes) => await onlyRefuses(() => decoder(bytes))), { seed: SEED, numRuns: RUNS })
  })
}

test('signed records (manifests, tombstones, DHT values) open or are refused, whatever they are', async () => {
  assert.equal((await openRecord(record)).signer, peerId.toString())
  const outer = decode(record, MAX_RECORD_BYTES) as { body: Uint8Array }
  const body = decode(outer.body, MAX_RECORD_BYTES)
  // The outer record mutated, or a body mutated inside an outer record that is otherwise well formed.
  const inner = inputsFor(body).map(b => encode({ ...outer, body: b }))
  await fc.assert(fc.asyncProperty(fc.oneof(inputsFor(outer), inner), async (bytes) => await onlyRefuses(async () => await openRecord(bytes))), { seed: SEED, numRuns: RUNS })
})

/** A gossipsub message as the library hands it over: signed by `from`. */
function gossip (data: Uint8Array, from = peerId): Message {
  return { type: 'signed', from, data, sequenceNumber: 1n, topic: 't', signature: new Uint8Array(64), key: key.publicKey } as unknown as Message
}

test('gossiped adverts and announcements are taken or refused, whatever they carry', async () => {
  assert.equal(parseAdvert(gossip(encode(advert))).advert.peerId, peerId.toString())
  const other = peerIdFromPrivateKey(await generateKeyPair('Ed25519'))
  assert.throws(() => parseAdvert(gossip(encode(advert), other)), InvalidMessageError, 'an advert for another peer is a validation error too')
  assert.throws(() => parseAnnouncement(gossip(encode(VALID.deploy), other)), InvalidMessageError)
  await fc.assert(fc.asyncProperty(inputsFor(advert), fc.boolean(), async (bytes, spoofed) => await onlyRefuses(() => parseAdvert(gossip(bytes, spoofed ? other : peerId)))), { seed: SEED, numRuns: RUNS })
  await fc.assert(fc.asyncProperty(fc.oneof(inputsFor(VALID.deploy), inputsFor(VALID.delete)), async (bytes) => await onlyRefuses(() => parseAnnouncement(gossip(bytes)))), { seed: SEED, numRuns: RUNS })
})

test('adverts passed on in a hello are opened or refused, whatever their bytes and signatures', async () => {
  assert.equal((await openSignedAdvert(signedAdvert))?.peerId, peerId.toString())
  const parts = fc.record({
    data: fc.oneof(inputsFor(advert), fc.constant(signedAdvert.data)),
    seqno: fc.oneof(fc.constant(signedAdvert.seqno), fc.uint8Array({ maxLength: 9 })),
    signature: fc.oneof(fc.constant(signedAdvert.signature), fc.uint8Array({ maxLength: 80 }))
  })
  await fc.assert(fc.asyncProperty(parts, async (signed) => await onlyRefuses(async () => await openSignedAdvert(signed))), { seed: SEED, numRuns: RUNS })
})
