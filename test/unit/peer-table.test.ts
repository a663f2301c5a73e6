import { test } from 'node:test'
import assert from 'node:assert/strict'
import { PeerTable } from '../../agent/peer-table.js'
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

test('free slots count the calls we sent since the last advert', () => {
  const table = new PeerTable({ expiryMs: 3500 })
  table.upsert(advert('a', 1, 1, 1))
  const entry = table.get('a')!
  assert.equal(table.freeSlots(entry, 'wasm'), 3)
  table.noteSent('a')
  table.noteSent('a')
  assert.equal(table.freeSlots(entry, 'wasm'), 1)
  table.upsert(advert('a', 2, 2, 3))
  assert.equal(table.freeSlots(entry, 'wasm'), 1)
})

test('RTT is smoothed', () => {
  const table = new PeerTable({ expiryMs: 3500 })
  table.upsert(advert('a', 1, 1))
  table.recordRtt('a', 10)
  assert.equal(table.get('a')?.rttMs, 10)
  table.recordRtt('a', 20)
  assert.equal(table.get('a')?.rttMs, 13)
})
