import { test } from 'node:test'
import assert from 'node:assert/strict'
import { fastMessageId } from '../../agent/swarm/node.js'
import { bareNodes } from '../helpers.js'

const from = (n: number): Uint8Array => new Uint8Array(38).fill(n)
const seqno = (n: number): Uint8Array => new Uint8Array(8).map((_, i) => i === 7 ? n : 0)

test('copies of one message share a fast id, whatever they carry; other messages do not', () => {
  const a = fastMessageId({ topic: 't', from: from(1), seqno: seqno(1), data: new Uint8Array([1]) })
  assert.equal(fastMessageId({ topic: 't', from: from(1), seqno: seqno(1), data: new Uint8Array([2]) }), a)
  assert.notEqual(fastMessageId({ topic: 't', from: from(1), seqno: seqno(2), data: new Uint8Array([1]) }), a)
  assert.notEqual(fastMessageId({ topic: 't', from: from(2), seqno: seqno(1), data: new Uint8Array([1]) }), a)
})

test('the boundary between publisher and sequence number cannot be shifted to forge an id', () => {
  const a = fastMessageId({ topic: 't', from: new Uint8Array([1, 2]), seqno: new Uint8Array([3]) })
  const b = fastMessageId({ topic: 't', from: new Uint8Array([1]), seqno: new Uint8Array([2, 3]) })
  assert.notEqual(a, b)
})

test('yamux tells the peer of freed window once half of it is consumed, and always when a flag must go', async () => {
  const { windowUpdateDue } = await import('../../agent/swarm/yamux-fix.js')
  const { StreamState } = await import('@chainsafe/libp2p-yamux/stream')
  const window = 256 * 1024
  assert.equal(windowUpdateDue(StreamState.Established, window, window - 1000), false)
  assert.equal(windowUpdateDue(StreamState.Established, window, window / 2), true)
  assert.equal(windowUpdateDue(StreamState.Established, window, 0), true)
  assert.equal(windowUpdateDue(StreamState.SYNReceived, window, window - 1), true, 'the ACK goes at once')
  assert.equal(windowUpdateDue(StreamState.Init, window, window), true, 'the SYN goes at once')
})


test('kad-dht does not keep its closest peers connected: the overlay decides which connections stay', async () => {
  const { stopClosestPeerTags } = await import('../../agent/swarm/node.js')
  const { nodes: [node], close } = await bareNodes('ds')
  try {
    const tagger = (node.services.dht as unknown as { routingTable: { closestPeerTagger: { running: boolean } } }).routingTable.closestPeerTagger
    assert.equal(tagger.running, false)
    assert.throws(() => { stopClosestPeerTags({} as never) }, /no routingTable.closestPeerTagger/)
  } finally {
    await close()
  }
})

test('peers named in DHT answers: one in the routing table is passed over, a stranger is only noted, never dialled', async () => {
  const { multiaddr } = await import('@multiformats/multiaddr')
  const { filterPeersInAnswers } = await import('../../agent/swarm/node.js')
  const { nodes: [a, b, c], close } = await bareNodes('a', 'b', 'c')
  try {
    await Promise.all([a.start(), b.start(), c.start()])
    const dht = a.services.dht as unknown as { routingTable: EventTarget & { routingTableUpdateQueue: { size: number, onIdle: () => Promise<void> } }, network: { safeDispatchEvent: (type: string, init: unknown) => boolean } }
    const added = new Promise<void>(resolve => { dht.routingTable.addEventListener('peer:add', () => { resolve() }, { once: true }) })
    await a.dial(b.getMultiaddrs())
    await added
    await dht.routingTable.routingTableUpdateQueue.onIdle()
    // An answer names B (in the routing table) at an address it never had, and C, a live agent A never met.
    dht.network.safeDispatchEvent('peer', { detail: { id: b.peerId, multiaddrs: [multiaddr('/ip4/127.0.0.1/tcp/9')] } })
    dht.network.safeDispatchEvent('peer', { detail: { id: c.peerId, multiaddrs: c.getMultiaddrs() } })
    // kad-dht would have queued both for its routing table at once, and dialled C to ping it.
    assert.equal(dht.routingTable.routingTableUpdateQueue.size, 0)
    for (let i = 0; i < 100 && !(await a.peerStore.has(c.peerId)); i++) await new Promise(resolve => setTimeout(resolve, 20))
    assert.deepEqual((await a.peerStore.get(c.peerId)).addresses.map(x => x.multiaddr.toString()), c.getMultiaddrs().map(m => m.toString().replace(/\/p2p\/.*$/, '')))
    assert.equal((await a.peerStore.get(b.peerId)).addresses.some(x => x.multiaddr.toString() === '/ip4/127.0.0.1/tcp/9'), false)
    // Noted, C can be dialled by its id (as a query would), and then enters the routing table.
    const cAdded = new Promise<void>(resolve => { dht.routingTable.addEventListener('peer:add', (evt) => { if ((evt as CustomEvent).detail.equals(c.peerId)) resolve() }) })
    await a.dial(c.peerId)
    await cAdded
    assert.throws(() => { filterPeersInAnswers({} as never, a) }, /no network.safeDispatchEvent/)
  } finally {
    await close()
  }
})
