import { test } from 'node:test'
import assert from 'node:assert/strict'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey, peerIdFromString } from '@libp2p/peer-id'
import { Connectivity, SWARM_KEEP_ALIVE } from '../../agent/swarm/connectivity.js'
import { picks } from '../../agent/swarm/overlay.js'
import { PeerTable } from '../../agent/swarm/peer-table.js'
import { WIRE_VERSION, type Advert } from '../../protocol/index.js'
import { eventually } from '../helpers.js'
import type { EdgeNode } from '../../agent/swarm/node.js'
import type { PeerId } from '@libp2p/interface'

async function newId (): Promise<string> {
  return peerIdFromPrivateKey(await generateKeyPair('Ed25519')).toString()
}

function advert (peerId: string): Advert {
  return { v: WIRE_VERSION, type: 'advert', peerId, addrs: [], arch: 'x64', platform: 'linux', cpus: 1, memTotal: 1, memFree: 1, runtimes: [{ kind: 'wasm', slots: 1, busy: 0 }], queue: 0, labels: {}, warm: [], functions: [], seq: 1, sentAt: Date.now() }
}

interface FakeConnection { remotePeer: PeerId, direction: 'inbound' | 'outbound', timeline: { open: number }, close: () => Promise<void> }

/** The parts of a libp2p node Connectivity uses: connections and their events, dials that succeed or are refused, the peer store's tags. */
class FakeNode extends EventTarget {
  readonly peerId: PeerId
  readonly connections = new Map<string, FakeConnection>()
  readonly refuses = new Set<string>()
  readonly dials: string[] = []
  readonly tags = new Map<string, Map<string, { value: number }>>()
  readonly peerStore = {
    merge: async (id: PeerId, data: { tags?: Record<string, { value: number } | undefined> }) => {
      const tags = this.tags.get(id.toString()) ?? new Map<string, { value: number }>()
      for (const [k, v] of Object.entries(data.tags ?? {})) { if (v === undefined) tags.delete(k); else tags.set(k, v) }
      this.tags.set(id.toString(), tags)
    },
    get: async (id: PeerId) => ({ tags: this.tags.get(id.toString()) ?? new Map() })
  }

  readonly services = { ping: { ping: async () => 1 } }

  constructor (self: string) {
    super()
    this.peerId = peerIdFromString(self)
  }

  getConnections (peer?: PeerId): FakeConnection[] {
    if (peer === undefined) return [...this.connections.values()]
    const c = this.connections.get(peer.toString())
    return c === undefined ? [] : [c]
  }

  async dial (peer: PeerId): Promise<void> {
    const id = peer.toString()
    this.dials.push(id)
    if (this.refuses.has(id)) throw new Error('connect ECONNREFUSED 127.0.0.1:1')
    this.connect(id)
  }

  connect (id: string, direction: 'inbound' | 'outbound' = 'outbound'): void {
    if (this.connections.has(id)) return
    const remotePeer = peerIdFromString(id)
    this.connections.set(id, { remotePeer, direction, timeline: { open: Date.now() }, close: async () => { this.drop(id) } })
    this.dispatchEvent(new CustomEvent('peer:connect', { detail: remotePeer }))
  }

  drop (id: string): void {
    if (!this.connections.delete(id)) return
    this.dispatchEvent(new CustomEvent('peer:disconnect', { detail: peerIdFromString(id) }))
  }
}

async function setup (peers: number, neighbours: number): Promise<{ node: FakeNode, table: PeerTable, conn: Connectivity, self: string, ids: string[] }> {
  const self = await newId()
  const ids = await Promise.all(Array.from({ length: peers }, newId))
  const node = new FakeNode(self)
  const table = new PeerTable({ expiryMs: 60_000 })
  const conn = new Connectivity(node as unknown as EdgeNode, table, { bootstrap: [], neighbours, redialCheckMs: 10, reconcileMs: 60_000 })
  conn.start()
  for (const id of ids) table.upsert(advert(id))
  return { node, table, conn, self, ids }
}

test('an agent dials the peers it picks, not every peer it knows', async (t) => {
  const { node, conn, self, ids } = await setup(10, 2)
  t.after(() => { conn.stop() })
  await eventually(() => node.dials.length >= 2, 5000, 'two dials')
  assert.deepEqual(new Set(node.dials), picks(self, ids, 2))
})

test('a neighbour whose connection drops and who refuses the redial leaves the table, and is reported lost', async (t) => {
  const { node, table, conn, ids } = await setup(3, 6)
  t.after(() => { conn.stop() })
  const victim = ids[0] as string
  node.connect(victim, 'inbound')
  node.refuses.add(victim)
  node.drop(victim)
  await eventually(() => table.get(victim) === undefined, 5000, 'victim gone')
  assert.deepEqual(conn.lost(), [victim])
  // Back in the table (it restarted), it is no longer reported.
  table.upsert(advert(victim))
  assert.deepEqual(conn.lost(), [])
})

test('a dropped connection to a peer no end keeps is no news: the peer stays a candidate', async (t) => {
  const { node, table, conn, self, ids } = await setup(12, 1)
  t.after(() => { conn.stop() })
  // A peer this agent does not pick, and that does not pick it, reached for a call.
  const everyone = [...ids, self]
  const stranger = ids.find(id => !picks(self, ids, 1).has(id) && !picks(id, everyone, 1).has(self)) as string
  node.connect(stranger)
  node.drop(stranger)
  const entry = table.get(stranger)
  assert.ok(entry !== undefined && table.isConnected(entry), 'not marked disconnected')
})

test('a peer reported lost is dropped only when this agent\'s own dial is refused too', async (t) => {
  const { node, table, conn, ids } = await setup(3, 6)
  t.after(() => { conn.stop() })
  const [dead, alive] = ids as [string, string]
  node.refuses.add(dead)
  conn.checkLost([dead, alive])
  await eventually(() => table.get(dead) === undefined, 5000, 'dead peer dropped')
  await eventually(() => node.dials.includes(alive), 5000, 'alive peer dialled')
  assert.ok(table.get(alive) !== undefined, 'a hostile or wrong report costs a dial, not a peer')
})

test('hints are dialled only while the agent has fewer connections than neighbours, past the peers it knows, and are not kept for it', async (t) => {
  const { node, conn, ids } = await setup(2, 2)
  t.after(() => { conn.stop() })
  const strangers = await Promise.all(Array.from({ length: 4 }, newId))
  conn.hint([...ids, ...strangers].map(peerId => ({ peerId, addrs: [] })))
  await eventually(() => strangers.filter(s => node.dials.includes(s)).length === 2, 5000, 'two strangers dialled')
  assert.deepEqual(strangers.filter(s => node.dials.includes(s)), strangers.slice(0, 2))
  for (const s of strangers) assert.equal(node.tags.get(s)?.has(SWARM_KEEP_ALIVE) ?? false, false, `${s} kept`)
})
