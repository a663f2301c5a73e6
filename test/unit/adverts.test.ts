import { test } from 'node:test'
import assert from 'node:assert/strict'
import { AdvertService, loadSignature, standingSignature } from '../../agent/swarm/adverts.js'
import { PeerTable } from '../../agent/swarm/peer-table.js'
import { WIRE_VERSION, type Advert } from '../../protocol/index.js'

type Snapshot = Omit<Advert, 'seq' | 'sentAt'>

function snapshot (busy = 0, extra: Partial<Snapshot> = {}): Snapshot {
  return {
    v: WIRE_VERSION, type: 'advert', peerId: 'self', addrs: ['/ip4/127.0.0.1/tcp/1'], arch: 'x64', platform: 'linux', cpus: 2, memTotal: 1, memFree: 1,
    runtimes: [{ kind: 'wasm', slots: 8, busy }], queue: 0, labels: {}, warm: [], functions: [], ...extra
  }
}

function setup (): { service: AdvertService, sent: Advert[], table: PeerTable, state: { snap: Snapshot }, advance: (ms: number) => Promise<void> } {
  let t = 1_000_000
  const sent: Advert[] = []
  const table = new PeerTable({ expiryMs: 60_000 })
  const state = { snap: snapshot() }
  const service = new AdvertService({ publish: async (a) => { sent.push(a) } }, table, 'self', { heartbeatMs: 10_000, minIntervalMs: 500, snapshot: () => state.snap, now: () => t, random: () => 0.5 })
  // The service's timer ticks every 500 ms; here the test ticks it, on the injected clock.
  const advance = async (ms: number): Promise<void> => {
    for (let i = 0; i < ms / 500; i++) {
      t += 500
      await service.tick()
    }
  }
  return { service, sent, table, state, advance }
}

test('an unchanged advert goes out once per heartbeat, not once a second', async () => {
  const { service, sent, advance } = setup()
  await service.tick()
  assert.equal(sent.length, 1)
  await advance(9500)
  assert.equal(sent.length, 1)
  await advance(500)
  assert.equal(sent.length, 2)
  await advance(30_000)
  assert.equal(sent.length, 5)
})

test('new holdings go out at the next tick; a step of load waits 5 s from the last advert; a smaller change waits for the heartbeat', async () => {
  const { service, sent, state, advance } = setup()
  state.snap = snapshot(1)
  await service.tick()
  // 2 of 8 busy is the same step (a quarter) as 1 of 8: nothing to tell.
  state.snap = snapshot(2)
  await advance(500)
  assert.equal(sent.length, 1)
  // Full is news, but load alone waits 5 s from the last advert.
  state.snap = snapshot(8)
  await advance(4000)
  assert.equal(sent.length, 1)
  await advance(500)
  assert.equal(sent.length, 2)
  assert.equal(sent[1]?.runtimes[0]?.busy, 8)
  // New holdings go at the next tick.
  state.snap = snapshot(8, { functions: [{ name: 'f', version: 1, sha256: 'a'.repeat(64) }] })
  await advance(500)
  assert.equal(sent.length, 3)
  // Load that went and came back between adverts is not news.
  state.snap = snapshot(0, { functions: state.snap.functions })
  await advance(1000)
  state.snap = snapshot(8, { functions: state.snap.functions })
  await advance(5000)
  assert.equal(sent.length, 3)
})

test('heartbeats are jittered, so that agents started together drift apart', async () => {
  const gaps = new Set<number>()
  for (const r of [0, 0.5, 0.999]) {
    let t = 0
    const times: number[] = []
    const s = new AdvertService({ publish: async () => { times.push(t) } }, new PeerTable({ expiryMs: 60_000 }), 'self', { heartbeatMs: 10_000, minIntervalMs: 500, snapshot: () => snapshot(), now: () => t, random: () => r })
    for (; t <= 30_000; t += 500) await s.tick()
    gaps.add((times[1] ?? 0) - (times[0] ?? 0))
  }
  assert.deepEqual([...gaps].sort((a, b) => a - b), [7500, 10_000, 12_500])
})

test('adverts are bounded in rate however fast things change', async () => {
  const { sent, state } = setup()
  let t = 0
  const s = new AdvertService({ publish: async (a) => { sent.push(a) } }, new PeerTable({ expiryMs: 60_000 }), 'self', { heartbeatMs: 10_000, minIntervalMs: 500, snapshot: () => state.snap, now: () => t, random: () => 0.5 })
  // Ticks every 50 ms for 5 s, what it holds changing at each: at most one advert per 500 ms.
  for (let i = 0; i < 100; i++) {
    t += 50
    state.snap = snapshot(0, { functions: [{ name: 'f', version: i + 1, sha256: 'a'.repeat(64) }] })
    await s.tick()
  }
  assert.ok(sent.length <= 10, `${sent.length} adverts in 5 s`)
  assert.ok(sent.length >= 5, 'changes still go out at the bounded rate')
  // The load flipping between idle and full at every tick for 20 s: one advert per 5 s.
  const before = sent.length
  for (let i = 0; i < 400; i++) {
    t += 50
    state.snap = snapshot(i % 2 === 0 ? 8 : 0, { functions: state.snap.functions })
    await s.tick()
  }
  assert.ok(sent.length - before <= 4, `${sent.length - before} adverts in 20 s of flipping load`)
  assert.ok(sent.length - before >= 2, 'load still goes out')
})

test('a new peer\'s advert does not make this agent advertise (it learns of this agent from its neighbours); a listener new to the table does', async () => {
  const { service, sent, table, advance } = setup()
  await service.tick()
  const peer = { ...snapshot(), peerId: 'p', seq: 1, sentAt: 1 }
  service.receive(peer)
  await advance(500)
  assert.equal(sent.length, 1, 'no advert for a join: answering every join was N adverts per join')
  assert.ok(table.get('p') !== undefined)
  // Its own advert, looped back, is ignored.
  service.receive({ ...snapshot(), seq: 9, sentAt: 9 })
  assert.equal(table.get('self'), undefined)
  // A peer that subscribed without being in the table has likely missed this agent's adverts.
  service.peerListening('p')
  await advance(500)
  assert.equal(sent.length, 1, 'a known peer that subscribes needs nothing')
  service.peerListening('q')
  await advance(500)
  assert.equal(sent.length, 2)
})

test('a peer watched go is advertised at once, within the rate bound', async () => {
  const { service, sent, state, advance } = setup()
  await service.tick()
  state.snap = snapshot(0, { lost: ['gone'] })
  await advance(500)
  assert.equal(sent.length, 2)
  assert.deepEqual(sent[1]?.lost, ['gone'])
})

test('the signatures ignore what does not need telling (exact busy within a step, memory); load and standing are apart', () => {
  assert.equal(loadSignature(snapshot(3)), loadSignature(snapshot(4, { memFree: 99 })))
  assert.equal(standingSignature(snapshot(3)), standingSignature(snapshot(8, { memFree: 99, queue: 2, warm: ['b'.repeat(64)] })))
  assert.notEqual(loadSignature(snapshot(0)), loadSignature(snapshot(1)))
  assert.notEqual(loadSignature(snapshot(0)), loadSignature(snapshot(0, { queue: 1 })))
  assert.notEqual(loadSignature(snapshot(0)), loadSignature(snapshot(0, { warm: ['b'.repeat(64)] })))
  assert.notEqual(standingSignature(snapshot(0)), standingSignature(snapshot(0, { functions: [{ name: 'f', version: 1, sha256: 'a'.repeat(64) }] })))
  assert.notEqual(standingSignature(snapshot(0)), standingSignature(snapshot(0, { lost: ['gone'] })))
})

test('an advert that reached nobody goes again when a peer starts to listen, even one already in the table; a heard one does not', async () => {
  let t = 1_000_000
  let listeners = 0
  const sent: Advert[] = []
  const table = new PeerTable({ expiryMs: 60_000 })
  const service = new AdvertService({ publish: async (a) => { sent.push(a); return listeners > 0 } }, table, 'self', { heartbeatMs: 10_000, minIntervalMs: 500, snapshot: () => snapshot(), now: () => t, random: () => 0.5 })
  await service.tick()
  // Its neighbour is in the table already (from a hello) when its subscription arrives.
  table.upsert({ ...snapshot(), peerId: 'p', seq: 1, sentAt: 1 })
  listeners = 1
  service.peerListening('p')
  t += 500
  await service.tick()
  assert.equal(sent.length, 2, 'the first advert, sent before anyone listened, goes again')
  service.peerListening('p')
  t += 500
  await service.tick()
  assert.equal(sent.length, 2, 'heard: a known listener is no reason to advertise')
})
