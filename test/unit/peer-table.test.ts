import { test } from 'node:test'
import assert from 'node:assert/strict'
import { PeerTable } from '../../agent/swarm/peer-table.js'
import { WIRE_VERSION, type Advert } from '../../protocol/index.js'

function advert (peerId: string, seq: number, sentAt: number, busy = 0): Advert {
  return {
    v: WIRE_VERSION, type: 'advert', peerId, addrs: [], arch: 'x64', platform: 'linux', cpus: 2, memTotal: 1, memFree: 1,
    runtimes: [{ kind: 'wasm', slots: 4, busy }], queue: 0, labels: {}, warm: [], functions: [], seq, sentAt
  }
}

function clock (): { now: () => number, advance: (ms: number) => void } {
  let t = 1_000_000
  return { now: () => t, advance: (ms) => { t += ms } }
}

test('expires a peer after three missed adverts', () => {
  const c = clock()
  const table = new PeerTable({ expiryMs: 3500, now: c.now })
  const left: string[] = []
  table.addEventListener('peer:leave', (e) => left.push(e.detail))
  table.upsert(advert('a', 1, 1))
  table.upsert(advert('b', 1, 1))
  c.advance(3000)
  table.upsert(advert('b', 2, 2))
  assert.deepEqual(table.expire(), [])
  c.advance(600)
  assert.deepEqual(table.expire(), ['a'])
  assert.deepEqual(left, ['a'])
  assert.deepEqual(table.list().map(e => e.peerId), ['b'])
})

test('a fresh advert keeps a peer alive', () => {
  const c = clock()
  const table = new PeerTable({ expiryMs: 3500, now: c.now })
  for (let i = 0; i < 10; i++) {
    table.upsert(advert('a', i, i))
    c.advance(1000)
    assert.deepEqual(table.expire(), [])
  }
})

test('an advert older than the one held is ignored (reordered gossip)', () => {
  const table = new PeerTable({ expiryMs: 3500 })
  assert.equal(table.upsert(advert('a', 5, 500, 3)), true)
  assert.equal(table.upsert(advert('a', 4, 400, 0)), false)
  assert.equal(table.get('a')?.advert.runtimes[0]?.busy, 3)
})

test('a restarted peer (seq from 0, later clock) replaces its old advert', () => {
  const table = new PeerTable({ expiryMs: 3500 })
  table.upsert(advert('a', 900, 500))
  assert.equal(table.upsert(advert('a', 0, 600)), true)
})

test('a call of ours takes a slot until it is answered, and gives it back at once', () => {
  const table = new PeerTable({ expiryMs: 3500 })
  table.upsert(advert('a', 1, 1, 1))
  const entry = table.get('a')!
  assert.equal(table.freeSlots(entry, 'wasm'), 3)
  table.callStarted('a', 'wasm')
  table.callStarted('a', 'wasm')
  assert.equal(table.freeSlots(entry, 'wasm'), 1)
  assert.equal(table.inFlight(entry, 'wasm'), 2)
  // No advert in between: the answer alone frees the slot.
  table.callEnded('a', 'wasm')
  assert.equal(table.freeSlots(entry, 'wasm'), 2)
  table.callEnded('a', 'wasm')
  assert.equal(table.freeSlots(entry, 'wasm'), 3)
})

test('an advert never counts our own calls in flight twice', () => {
  const table = new PeerTable({ expiryMs: 3500 })
  table.upsert(advert('a', 1, 1, 0))
  const entry = table.get('a')!
  table.callStarted('a', 'wasm')
  table.callStarted('a', 'wasm')
  // The peer advertises 3 busy of 4: two of them are ours, one is someone else's.
  table.upsert(advert('a', 2, 2, 3))
  assert.equal(table.freeSlots(entry, 'wasm'), 1)
  assert.equal(entry.load.get('wasm')?.othersBusy, 1)
  // Ours come back: the other caller's call still holds its slot.
  table.callEnded('a', 'wasm')
  table.callEnded('a', 'wasm')
  assert.equal(table.freeSlots(entry, 'wasm'), 3)
})

test('the load in an answer replaces the advert at once: a BUSY answer shows the peer full', () => {
  const table = new PeerTable({ expiryMs: 3500 })
  table.upsert(advert('a', 1, 1, 0))
  const entry = table.get('a')!
  table.callStarted('a', 'wasm')
  table.callStarted('a', 'wasm')
  // Refused: all 4 slots busy, one of them with our other call, and 2 calls of others queued.
  table.callEnded('a', 'wasm', { slots: 4, busy: 4, queued: 2, yours: 1 })
  assert.equal(table.freeSlots(entry, 'wasm'), 0)
  assert.equal(table.queued(entry, 'wasm'), 2)
  assert.deepEqual({ ...entry.load.get('wasm'), at: 0 }, { slots: 4, othersBusy: 3, othersQueued: 2, at: 0, source: 'answer' })
  // Our other call returns with the peer now idle but for one call of others.
  table.callEnded('a', 'wasm', { slots: 4, busy: 1, queued: 0, yours: 0 })
  assert.equal(table.freeSlots(entry, 'wasm'), 3)
})

test('our calls beyond a peer\'s free slots count as queued there', () => {
  const table = new PeerTable({ expiryMs: 3500 })
  table.upsert(advert('a', 1, 1, 3))
  const entry = table.get('a')!
  table.callStarted('a', 'wasm')
  table.callStarted('a', 'wasm')
  assert.equal(table.freeSlots(entry, 'wasm'), 0)
  assert.equal(table.queued(entry, 'wasm'), 1)
})

test('RTT is smoothed', () => {
  const table = new PeerTable({ expiryMs: 3500 })
  table.upsert(advert('a', 1, 1))
  table.recordRtt('a', 10)
  assert.equal(table.get('a')?.rttMs, 10)
  table.recordRtt('a', 20)
  assert.equal(table.get('a')?.rttMs, 13)
})

test('a peer whose connection is gone is not a candidate, and leaves once the grace passes without it coming back', () => {
  const c = clock()
  const table = new PeerTable({ expiryMs: 60_000, disconnectGraceMs: 30_000, now: c.now })
  const left: string[] = []
  table.addEventListener('peer:leave', (e) => left.push(e.detail))
  table.upsert(advert('a', 1, 1))
  table.upsert(advert('b', 1, 1))
  table.markDisconnected('a')
  table.markDisconnected('b')
  assert.equal(table.isConnected(table.get('a')!), false)
  c.advance(20_000)
  // b is redialled in time; a is not.
  table.markConnected('b')
  assert.equal(table.isConnected(table.get('b')!), true)
  c.advance(11_000)
  assert.deepEqual(table.expire(), ['a'])
  assert.deepEqual(left, ['a'])
})

test('while connected, a peer whose adverts are late (busy) stays: only the long silence bound drops it', () => {
  const c = clock()
  const table = new PeerTable({ expiryMs: 60_000, now: c.now })
  const left: string[] = []
  table.addEventListener('peer:leave', (e) => left.push(e.detail))
  table.upsert(advert('a', 1, 1))
  // Adverts 10 s apart, some 25 s late: never a leave.
  for (let i = 2; i < 8; i++) {
    c.advance(i % 2 === 0 ? 35_000 : 10_000)
    table.upsert(advert('a', i, i))
    assert.deepEqual(table.expire(), [])
  }
  c.advance(60_001)
  assert.deepEqual(table.expire(), ['a'])
  assert.deepEqual(left, ['a'])
})

test('disconnects and reconnects of a peer never in the table are ignored', () => {
  const table = new PeerTable({ expiryMs: 60_000 })
  table.markDisconnected('ghost')
  table.markConnected('ghost')
  assert.equal(table.size, 0)
})

test('an advert passed on late keeps its age: it expires when its author went silent, and one already past the bound is refused', () => {
  const c = clock()
  const table = new PeerTable({ expiryMs: 60_000, now: c.now })
  const signed = { data: new Uint8Array([1]), seqno: new Uint8Array(8), signature: new Uint8Array(64) }
  assert.equal(table.upsert(advert('old', 1, 1), signed, 60_000), false)
  assert.equal(table.get('old'), undefined)
  assert.equal(table.upsert(advert('a', 1, 1), signed, 50_000), true)
  c.advance(10_001)
  assert.deepEqual(table.expire(), ['a'])
})

test('signed adverts are kept to pass on, freshest first; an advert from a hello keeps the signed copy held', () => {
  const c = clock()
  const table = new PeerTable({ expiryMs: 60_000, now: c.now })
  const copy = (n: number): { data: Uint8Array, seqno: Uint8Array, signature: Uint8Array } => ({ data: new Uint8Array([n]), seqno: new Uint8Array(8), signature: new Uint8Array(64) })
  table.upsert(advert('a', 1, 1), copy(1))
  c.advance(10)
  table.upsert(advert('b', 1, 1), copy(2))
  table.upsert(advert('c', 1, 1))
  table.upsert(advert('a', 2, 2))
  assert.deepEqual(table.signedAdverts(10).map(s => s.data[0]), [1, 2])
  assert.deepEqual(table.signedAdverts(1).map(s => s.data[0]), [1])
})

test('the advert held, arriving again with its signature (a hello, then its signed copy), keeps the signature to pass on', () => {
  const table = new PeerTable({ expiryMs: 60_000 })
  const signed = { data: new Uint8Array([9]), seqno: new Uint8Array(8), signature: new Uint8Array(64) }
  table.upsert(advert('a', 3, 30))
  assert.equal(table.upsert(advert('a', 3, 30), signed), false, 'not news')
  assert.deepEqual(table.signedAdverts(5).map(s => s.data[0]), [9])
})

test('an advert is news (worth checking its signature) if it is of a new peer, newer than the one held, or the one held without its signed copy', () => {
  const table = new PeerTable({ expiryMs: 60_000 })
  const signed = { data: new Uint8Array([1]), seqno: new Uint8Array(8), signature: new Uint8Array(64) }
  assert.equal(table.isNews(advert('a', 3, 30)), true, 'a new peer')
  assert.equal(table.isNews(advert('a', 3, 30), 60_000), false, 'past the silence bound')
  table.upsert(advert('a', 3, 30))
  assert.equal(table.isNews(advert('a', 3, 30)), true, 'held without its signed copy')
  table.upsert(advert('a', 3, 30), signed)
  assert.equal(table.isNews(advert('a', 3, 30)), false, 'held, signed')
  assert.equal(table.isNews(advert('a', 2, 20)), false, 'older')
  assert.equal(table.isNews(advert('a', 4, 40)), true, 'newer')
  assert.equal(table.isNews(advert('a', 0, 50)), true, 'restarted: seq from 0, a later clock')
})
