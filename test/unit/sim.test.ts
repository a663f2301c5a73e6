import { test } from 'node:test'
import assert from 'node:assert/strict'
import { Swarm } from '../../bench/sim/swarm.js'
import { Offloader, type CallOutcome } from '../../bench/sim/offload.js'
import { DESIGNS, type Design } from '../../bench/sim/designs.js'
import { Random } from '../../bench/sim/random.js'
import { POLICIES, type Policy } from '../../agent/calls/policies/index.js'

const ON_CHANGE = DESIGNS['on-change'] as Design
const PERIODIC = DESIGNS['periodic-1s'] as Design
const LOCAL_FIRST = POLICIES['local-first'] as Policy

function swarm (design: Design, joiners = 0): Swarm {
  return new Swarm({ size: 30, joiners, design, seed: 7 })
}

async function advance (s: Swarm, ms: number): Promise<void> {
  await s.runUntil(s.clock.now + ms)
}

test('every peer table of a 30-agent swarm comes to list all the other agents', async () => {
  const s = swarm(ON_CHANGE)
  await advance(s, 5000)
  assert.equal(s.observers.length, 30)
  for (const o of s.observers) assert.equal(s.tableRight(o, []), true, `${o.index} lists ${o.table.size} peers`)
})

test('agents that join are in every table, and every joiner has the whole swarm, within a few seconds', async () => {
  const s = swarm(ON_CHANGE, 3)
  await advance(s, 15_000)
  const joined = s.join(3)
  await advance(s, 3000)
  for (const o of s.observers.filter(o => o.alive)) {
    assert.equal(s.tableRight(o, []), true, `${o.index} lists ${o.table.size} of ${s.aliveCount - 1}`)
    for (const j of joined) if (j !== o) assert.notEqual(o.table.get(j.peerId), undefined)
  }
})

test('agents that stop leave every table within the expiry bound, and their connected peers drop them at once', async () => {
  const s = swarm(ON_CHANGE)
  await advance(s, 15_000)
  const gone = s.leave(3)
  await advance(s, 3000)
  // Connection loss is known to connected peers: they removed the stopped agents after the refused redial.
  for (const g of gone) {
    for (const p of s.mesh.conns[g.index] ?? []) assert.equal(s.agents[p]?.table.get(g.peerId), undefined)
  }
  // Everyone else from the lost reports in the neighbours' adverts (a dial to check), at the latest by expiry plus the expiry period.
  await advance(s, ON_CHANGE.expiryMs + 7500 + 1000)
  for (const o of s.observers.filter(o => o.alive)) assert.equal(s.tableRight(o, gone), true, `${o.index} still lists a stopped agent`)
})

test('on change with a 10 s heartbeat, an idle swarm sends fewer adverts than every agent every second', async () => {
  const counts: number[] = []
  for (const design of [ON_CHANGE, PERIODIC]) {
    const s = swarm(design)
    await advance(s, 5000)
    const before = s.traffic.adverts
    await advance(s, 30_000)
    counts.push(s.traffic.adverts - before)
  }
  const [onChange, periodic] = counts as [number, number]
  assert.ok(periodic >= 29 * 30, `periodic sent ${periodic}`)
  assert.ok(onChange * 5 < periodic, `on-change sent ${onChange}, periodic ${periodic}`)
})

test('a call from an agent whose slots are all busy is placed on an idle peer', async () => {
  const s = swarm(ON_CHANGE)
  await advance(s, 5000)
  const origin = s.agents[0]
  assert.ok(origin !== undefined)
  // Its slots taken by calls that do not end.
  for (let i = 0; i < origin.slots; i++) assert.equal(origin.take(-1, false, 1000, () => {}), true)
  const offloader = new Offloader(s, { policy: LOCAL_FIRST, deadlineMs: 3000, serviceMs: 50, random: new Random(1) })
  let outcome: CallOutcome | undefined
  offloader.call(origin, (o) => { outcome = o })
  await advance(s, 3000)
  assert.ok(outcome !== undefined)
  assert.equal(outcome.ok, true)
  assert.equal(outcome.local, false)
  assert.ok(outcome.ranOn !== undefined && outcome.ranOn !== origin)
  // The peer it ran on answered with its load, and the caller's view of it has none of its calls in flight any more.
  const entry = origin.table.get(outcome.ranOn.peerId)
  assert.ok(entry !== undefined)
  assert.equal(entry.load.get('wasm')?.source, 'answer')
  assert.equal(origin.table.inFlight(entry, 'wasm'), 0)
})
