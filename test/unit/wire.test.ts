import { test } from 'node:test'
import assert from 'node:assert/strict'
import { encode as cborEncode } from 'cbor-x'
import {
  decode, encode, MAX_GOSSIP_BYTES, MAX_INLINE_CODE_BYTES, validateAdvert, validateAnnouncement, validateHello, validateInvokeFrame, validateInvokeRequest, validateInvokeResponse,
  WIRE_VERSION, type Advert
} from '../../protocol/index.js'

function advert (extra: Partial<Advert> = {}): Advert {
  return {
    v: WIRE_VERSION,
    type: 'advert',
    peerId: '12D3KooWExample',
    addrs: ['/ip4/127.0.0.1/tcp/4001'],
    arch: 'arm64',
    platform: 'linux',
    cpus: 4,
    memTotal: 4e9,
    memFree: 2e9,
    runtimes: [{ kind: 'wasm', slots: 4, busy: 1 }],
    queue: 0,
    labels: { site: 'lab' },
    warm: [],
    functions: [{ name: 'echo', version: 2, sha256: 'a'.repeat(64) }],
    seq: 7,
    sentAt: 1_700_000_000_000,
    ...extra
  }
}

test('an advert survives encoding and validation unchanged', () => {
  const a = advert()
  assert.deepEqual(validateAdvert(decode(encode(a), MAX_GOSSIP_BYTES)), a)
})

test('a typical advert is far below the gossip size limit', () => {
  const many = Array.from({ length: 100 }, (_, i) => ({ name: `fn-${i}`, version: 1, sha256: 'b'.repeat(64) }))
  assert.ok(encode(advert({ functions: many })).byteLength < MAX_GOSSIP_BYTES)
})

test('an advert of another wire version is refused', () => {
  assert.throws(() => validateAdvert({ ...advert(), v: 2 }), { name: 'InvalidMessageError', message: /unsupported version 2/ })
})

test('an advert with a bad field is refused, naming the field', () => {
  assert.throws(() => validateAdvert({ ...advert(), cpus: -1 }), { name: 'InvalidMessageError', message: /cpus/ })
  assert.throws(() => validateAdvert({ ...advert(), runtimes: [{ kind: 'jvm', slots: 1, busy: 0 }] }), { message: /unknown runtime/ })
  assert.throws(() => validateAdvert({ ...advert(), functions: [{ name: 'Bad Name', version: 1, sha256: 'a'.repeat(64) }] }), { message: /functions\[0\]\.name/ })
  assert.throws(() => validateAdvert({ ...advert(), labels: { k: 5 } }), { message: /labels/ })
  assert.throws(() => validateAdvert('not a map'), { name: 'InvalidMessageError' })
})

test('unknown fields are dropped, not passed on', () => {
  const v = validateAdvert({ ...advert(), evil: { deep: true } }) as unknown as Record<string, unknown>
  assert.equal(v.evil, undefined)
})

test('an oversize message is refused before it is parsed', () => {
  const big = new Uint8Array(MAX_GOSSIP_BYTES + 1)
  assert.throws(() => decode(big, MAX_GOSSIP_BYTES), { name: 'MessageTooLargeError' })
})

test('malformed CBOR is an InvalidMessageError, not a crash', () => {
  assert.throws(() => decode(Uint8Array.from([0xbf, 0x61]), MAX_GOSSIP_BYTES), { name: 'InvalidMessageError' })
  assert.throws(() => decode(Uint8Array.from([0xff, 0xff, 0xff]), MAX_GOSSIP_BYTES), { name: 'InvalidMessageError' })
})

test('byte strings decode as bytes, as any CBOR peer would send them', () => {
  const request = { v: 1, type: 'invoke', id: 1, fn: { name: 'echo', version: 1, runtime: 'wasm', sha256: 'c'.repeat(64), size: 10, memoryBytes: 65536 * 16, timeoutMs: 1000, deployedAt: 1 }, input: Buffer.from('hi'), deadlineMs: 1000, holders: [] }
  const decoded = validateInvokeRequest(decode(cborEncode(request), 1 << 20))
  assert.equal(Buffer.from(decoded.input).toString(), 'hi')
})

test('invoke responses validate both results and failures', () => {
  const ok = validateInvokeResponse({ v: 1, type: 'result', id: 3, output: Buffer.from('x'), warm: true, timings: { queueMs: 0, fetchMs: 0, runMs: 1.5 } })
  assert.equal(ok.type, 'result')
  const failed = validateInvokeResponse({ v: 1, type: 'error', id: 3, code: 'BUSY', message: 'all slots busy' })
  assert.equal(failed.type === 'error' && failed.code, 'BUSY')
  assert.throws(() => validateInvokeResponse({ v: 1, type: 'result', id: 3, output: 'not bytes', warm: true, timings: {} }), { name: 'InvalidMessageError' })
})

test('answers carry the callee\'s load, checked like any field; BUSY says when to retry', () => {
  const load = { slots: 4, busy: 3, queued: 1, yours: 2 }
  const ok = validateInvokeResponse({ v: 1, type: 'result', id: 3, output: Buffer.from('x'), warm: true, timings: { queueMs: 0, fetchMs: 0, runMs: 1 }, load })
  assert.deepEqual(ok.load, load)
  const busy = validateInvokeResponse({ v: 1, type: 'error', id: 4, code: 'BUSY', message: 'all slots busy', load, retryAfterMs: 120 })
  assert.deepEqual(busy.type === 'error' && [busy.load, busy.retryAfterMs], [load, 120])
  assert.throws(() => validateInvokeResponse({ v: 1, type: 'error', id: 4, code: 'BUSY', message: 'x', load: { ...load, busy: -1 } }), { name: 'InvalidMessageError', message: /load\.busy/ })
  assert.throws(() => validateInvokeResponse({ v: 1, type: 'error', id: 4, code: 'BUSY', message: 'x', load: { ...load, slots: 2 ** 40 } }), { name: 'InvalidMessageError', message: /load\.slots/ })
  assert.throws(() => validateInvokeResponse({ v: 1, type: 'error', id: 4, code: 'BUSY', message: 'x', retryAfterMs: 'soon' }), { name: 'InvalidMessageError', message: /retryAfterMs/ })
})

test('a caller\'s frame is a call or the cancel of one', () => {
  assert.deepEqual(validateInvokeFrame({ v: 1, type: 'cancel', id: 9, junk: 'dropped' }), { v: 1, type: 'cancel', id: 9 })
  assert.equal(validateInvokeFrame({ v: 1, type: 'invoke', id: 1, fn: { name: 'f', version: 1, sha256: 'a'.repeat(64) }, input: Buffer.from(''), deadlineMs: 10, holders: [] }).type, 'invoke')
  assert.throws(() => validateInvokeFrame({ v: 1, type: 'cancel', id: -1 }), { name: 'InvalidMessageError', message: /id/ })
  assert.throws(() => validateInvokeFrame({ v: 2, type: 'cancel', id: 1 }), { name: 'InvalidMessageError', message: /version/ })
})

test('a hello carries an advert and bounded hints of other peers', () => {
  const hello = { v: 1, type: 'hello', advert: advert(), peers: [{ peerId: 'p', addrs: ['/ip4/10.0.0.2/tcp/4001'] }] }
  assert.deepEqual(validateHello(hello), hello)
  assert.throws(() => validateHello({ ...hello, advert: { ...advert(), v: 9 } }), { name: 'InvalidMessageError' })
  assert.throws(() => validateHello({ ...hello, peers: Array.from({ length: 257 }, () => ({ peerId: 'p', addrs: [] })) }), { name: 'InvalidMessageError', message: /peers: more than 256/ })
  assert.throws(() => validateHello({ ...hello, peers: [{ peerId: 'p', addrs: Array(17).fill('/ip4/1.2.3.4/tcp/1') }] }), { name: 'InvalidMessageError', message: /addrs/ })
  assert.deepEqual(validateHello({ ...hello, knows: 49 }), { ...hello, knows: 49 })
  assert.throws(() => validateHello({ ...hello, knows: -1 }), { name: 'InvalidMessageError', message: /knows/ })
  assert.throws(() => validateHello({ ...hello, knows: 'all' }), { name: 'InvalidMessageError', message: /knows/ })
})

test('announcements of deploy and delete validate', () => {
  const del = validateAnnouncement({ v: 1, type: 'delete', name: 'echo', version: 3, by: 'peer', at: 1 })
  assert.equal(del.type, 'delete')
  assert.throws(() => validateAnnouncement({ v: 1, type: 'deploy', fn: {}, holder: 'p', at: 1 }), { name: 'InvalidMessageError' })
})

test('a deploy announcement carries small code with its signed record, and only then', () => {
  const fn = { name: 'echo', version: 1, runtime: 'wasm', sha256: 'c'.repeat(64), size: 3, memoryBytes: 65536, timeoutMs: 1000, deployedAt: 1 }
  const deploy = { v: 1, type: 'deploy', fn, holder: 'p', at: 1, record: Buffer.from('rec'), code: Buffer.from('abc') }
  assert.deepEqual(validateAnnouncement(deploy), deploy)
  assert.throws(() => validateAnnouncement({ ...deploy, record: undefined }), { name: 'InvalidMessageError', message: /code: comes without a signed record/ })
  assert.throws(() => validateAnnouncement({ ...deploy, code: Buffer.from('abcd') }), { name: 'InvalidMessageError', message: /code: is 4 bytes, but fn.size says 3/ })
  const big = Buffer.alloc(MAX_INLINE_CODE_BYTES + 1)
  assert.throws(() => validateAnnouncement({ ...deploy, fn: { ...fn, size: big.byteLength }, code: big }), { name: 'InvalidMessageError', message: /code: larger than/ })
})
