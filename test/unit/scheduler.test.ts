import { test, beforeEach, afterEach } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { LOOKUP_BURST, Scheduler, type RemoteInvoker, type CodeFetcher } from '../../agent/calls/scheduler.js'
import { FunctionRegistry } from '../../agent/code/registry.js'
import { PeerTable } from '../../agent/swarm/peer-table.js'
import { Metrics } from '../../agent/metrics.js'
import { NoopRuntime } from '../../runtimes/noop.js'
import { RuntimeSet } from '../../runtimes/set.js'
import { BusyError, CancelledError, DeadlineExceededError, FunctionError, PeerGoneError, UntrustedManifestError, WIRE_VERSION, type Advert, type InvokeResult } from '../../protocol/index.js'
import { specFor, text } from '../helpers.js'
import { withReportedLoad } from '../../agent/calls/invoke-client.js'

const CODE = Buffer.from('pretend this is wasm')
const SPEC = specFor('fn', CODE)

type Behaviour = 'ok' | 'busy' | 'gone' | 'fail' | 'hang'

function advert (peerId: string, busy = 0): Advert {
  return {
    v: WIRE_VERSION, type: 'advert', peerId, addrs: [], arch: 'x64', platform: 'linux', cpus: 2, memTotal: 1, memFree: 1,
    runtimes: [{ kind: 'wasm', slots: 2, busy }], queue: 0, labels: {}, warm: [], functions: [{ name: SPEC.name, version: 1, sha256: SPEC.sha256 }], seq: 1, sentAt: Date.now()
  }
}

class FakePeers implements RemoteInvoker {
  readonly sent: string[] = []
  constructor (readonly behaviour: Record<string, Behaviour>) {}
  async call (peer: string, call: { input: Uint8Array }, options: { signal: AbortSignal }): Promise<InvokeResult> {
    this.sent.push(peer)
    switch (this.behaviour[peer]) {
      case 'busy': throw new BusyError('all slots busy')
      case 'gone': throw new PeerGoneError('stream closed mid-call')
      case 'fail': throw new FunctionError('function fn exited with code 3', { stderr: 'boom\n' })
      case 'hang': return await new Promise((_resolve, reject) => { options.signal.addEventListener('abort', () => { reject(new DeadlineExceededError('no answer')) }) })
      default: return { v: 1, type: 'result', id: 1, output: call.input, warm: true, timings: { queueMs: 0, fetchMs: 0, runMs: 1 } }
    }
  }
}

const noFetch: CodeFetcher = { fetchChunks: async () => { throw new Error('no fetch expected') } }

let dir: string
// AbortSignal.timeout does not keep the event loop alive; an agent has other handles, a test does not.
let keepAlive: NodeJS.Timeout
let registry: FunctionRegistry
let peers: PeerTable
let runtime: NoopRuntime

beforeEach(() => {
  keepAlive = setInterval(() => {}, 1000)
  dir = mkdtempSync(join(tmpdir(), 'edge-sched-'))
  registry = new FunctionRegistry(dir)
  peers = new PeerTable({ expiryMs: 60_000 })
  runtime = new NoopRuntime({ slots: 1 })
  registry.learn(SPEC)
})
afterEach(() => {
  clearInterval(keepAlive)
  rmSync(dir, { recursive: true, force: true })
})

function scheduler (client: RemoteInvoker, fetcher: CodeFetcher = noFetch): Scheduler {
  const trust = { authorise: async () => ({ runtime: SPEC.runtime, size: SPEC.size, memoryBytes: SPEC.memoryBytes, timeoutMs: SPEC.timeoutMs, deployedAt: SPEC.deployedAt, chunks: ['cid-0'] }), isAuthorised: () => true, trustsPeer: (peer: string) => !peer.startsWith('rogue') }
  return new Scheduler({ selfId: 'self', registry, runtimes: new RuntimeSet([runtime]), peers, client, fetcher, trust, metrics: new Metrics(() => 0), hold: (spec, code) => { registry.hold(spec, code) } })
}

function addPeers (...ids: Array<[string, number]>): void {
  for (const [id, rtt] of ids) {
    peers.upsert(advert(id))
    registry.setAdvertised(id, advert(id).functions)
    peers.recordRtt(id, rtt)
  }
}

test('runs locally when this agent holds the code and has a free slot', async () => {
  registry.hold(SPEC, CODE)
  addPeers(['a', 1])
  const client = new FakePeers({})
  const out = await scheduler(client).invoke('fn', Buffer.from('hi'))
  assert.equal(out.local, true)
  assert.equal(text(out.output), 'hi')
  assert.deepEqual(client.sent, [])
})

test('a busy peer is skipped at once and the next candidate runs the call', async () => {
  addPeers(['a', 1], ['b', 2])
  const release = runtime.saturate()
  const client = new FakePeers({ a: 'busy', b: 'ok' })
  const out = await scheduler(client).invoke('fn', Buffer.from('x'))
  release()
  assert.equal(out.ranOn, 'b')
  assert.deepEqual(out.attempts.map(a => [a.peerId, a.outcome]), [['a', 'busy'], ['b', 'ok']])
})

test('a peer that dies mid-call is retried on another candidate', async () => {
  addPeers(['a', 1], ['b', 2])
  const client = new FakePeers({ a: 'gone', b: 'ok' })
  const out = await scheduler(client).invoke('fn', Buffer.from('x'), { policy: 'near' })
  assert.equal(out.ranOn, 'b')
  assert.equal(out.attempts[0]?.outcome, 'gone')
})

test('a peer not trusted here gets no call, however near and free its advert says it is', async () => {
  addPeers(['rogue-1', 1], ['b', 20])
  peers.upsert({ ...advert('rogue-1'), runtimes: [{ kind: 'wasm', slots: 4096, busy: 0 }] })
  const release = runtime.saturate()
  const client = new FakePeers({ 'rogue-1': 'ok', b: 'ok' })
  for (const policy of ['near', 'least-loaded', 'p2c']) {
    const out = await scheduler(client).invoke('fn', Buffer.from('x'), { policy })
    assert.equal(out.ranOn, 'b', policy)
  }
  release()
  assert.deepEqual([...new Set(client.sent)], ['b'])
})

test('a function that fails on a peer is not retried elsewhere', async () => {
  addPeers(['a', 1], ['b', 2])
  const client = new FakePeers({ a: 'fail', b: 'ok' })
  await assert.rejects(scheduler(client).invoke('fn', Buffer.from('x'), { policy: 'near' }), (err: Error & { stderr: string, attempts: unknown[] }) => {
    assert.equal(err.name, 'FunctionError')
    assert.equal(err.stderr, 'boom\n')
    assert.equal(err.attempts.length, 1)
    return true
  })
  assert.deepEqual(client.sent, ['a'])
})

test('when every place is busy or too slow for the deadline the call fails as overloaded', async () => {
  runtime = new NoopRuntime({ slots: 1, delayMs: 400 })
  registry.hold(SPEC, CODE)
  addPeers(['a', 1])
  const peer = new FakePeers({ a: 'busy' })
  const s = scheduler(peer)
  s.runTimes.observe(SPEC.sha256, 'wasm', 400)
  const running = s.invoke('fn', Buffer.from('x'), { policy: 'local' })
  await new Promise(resolve => setTimeout(resolve, 20))
  await assert.rejects(s.invoke('fn', Buffer.from('x'), { timeoutMs: 600 }), (err: Error & { attempts: Array<{ peerId: string, outcome: string }> }) => {
    assert.equal(err.name, 'OverloadedError')
    assert.deepEqual(err.attempts.map(a => [a.peerId, a.outcome]), [['a', 'busy']], 'the local queue, ~780 ms, was not tried for a 600 ms deadline')
    return true
  })
  await running
})

test('a peer that never answers is abandoned at the deadline', async () => {
  addPeers(['a', 1])
  const started = Date.now()
  await assert.rejects(scheduler(new FakePeers({ a: 'hang' })).invoke('fn', Buffer.from('x'), { policy: 'peer', peer: 'a', timeoutMs: 300 }), { name: 'DeadlineExceededError' })
  assert.ok(Date.now() - started < 3000)
})

test('peers whose advert shows no free slot are not tried', async () => {
  peers.upsert(advert('full', 2))
  registry.setAdvertised('full', advert('full').functions)
  addPeers(['free', 9])
  const client = new FakePeers({ full: 'ok', free: 'ok' })
  const out = await scheduler(client).invoke('fn', Buffer.from('x'), { policy: 'near' })
  assert.equal(out.ranOn, 'free')
  assert.deepEqual(out.ranking.skipped.map(s => s.peerId), ['full'])
})

test('fetches the code chunk by chunk, as its manifest lists it, before running it here; concurrent calls fetch once', async () => {
  addPeers(['a', 1])
  const fetched: Array<{ chunks: string[], hints: string[] }> = []
  const fetcher: CodeFetcher = {
    fetchChunks: async (layout, hints) => {
      fetched.push({ chunks: layout.chunks, hints })
      await new Promise(resolve => setTimeout(resolve, 20))
      return { code: CODE }
    }
  }
  const s = scheduler(new FakePeers({}), fetcher)
  const [out] = await Promise.all([1, 2, 3].map(async () => await s.invoke('fn', Buffer.from('x'), { policy: 'local' })))
  assert.equal(out?.local, true)
  assert.deepEqual(fetched, [{ chunks: ['cid-0'], hints: ['a'] }])
  assert.ok(registry.holdsCode(SPEC.sha256))
})

test('unknown functions and policies are clear errors', async () => {
  await assert.rejects(scheduler(new FakePeers({})).invoke('nope', Buffer.from('')), { name: 'FunctionNotFoundError' })
  await assert.rejects(scheduler(new FakePeers({})).invoke('fn', Buffer.from(''), { policy: 'random' }), { name: 'BadRequestError', message: /unknown policy 'random'/ })
})

test('an offloaded call that finds every slot busy answers BUSY and is not offloaded again', async () => {
  registry.hold(SPEC, CODE)
  addPeers(['a', 1])
  const release = runtime.saturate()
  const client = new FakePeers({ a: 'ok' })
  await assert.rejects(scheduler(client).executeOffloaded({ v: 1, type: 'invoke', id: 1, fn: SPEC, input: Buffer.from('x'), deadlineMs: 1000, holders: [] }, 'a', AbortSignal.timeout(1000)), { name: 'BusyError' })
  release()
  assert.deepEqual(client.sent, [])
})

/** A peer with one slot that answers after `ms`, reporting its load as a real one does. */
class OneSlotPeer implements RemoteInvoker {
  readonly sent: string[] = []
  readonly running = new Set<string>()
  constructor (readonly ms: number) {}
  async call (peer: string, call: { input: Uint8Array }, options: { signal: AbortSignal }): Promise<InvokeResult> {
    this.sent.push(peer)
    if (this.running.has(peer)) throw withReportedLoad(new BusyError('all slots busy'), { slots: 1, busy: 1, queued: 0, yours: 1 })
    this.running.add(peer)
    await new Promise<void>((resolve, reject) => {
      const t = setTimeout(resolve, this.ms)
      options.signal.addEventListener('abort', () => { clearTimeout(t); reject(options.signal.reason as Error) }, { once: true })
    }).finally(() => { this.running.delete(peer) })
    return { v: 1, type: 'result', id: 1, output: call.input, warm: true, timings: { queueMs: 0, fetchMs: 0, runMs: this.ms }, load: { slots: 1, busy: 0, queued: 0, yours: 0 } }
  }
}

function oneSlotAdvert (peerId: string): Advert {
  return { ...advert(peerId), runtimes: [{ kind: 'wasm', slots: 1, busy: 0 }] }
}

test('a finished remote call frees its slot on the peer before the next advert: back-to-back calls all offload', async () => {
  registry.hold(SPEC, CODE)
  peers.upsert(oneSlotAdvert('a'))
  registry.setAdvertised('a', advert('a').functions)
  peers.recordRtt('a', 1)
  const release = runtime.saturate()
  const client = new OneSlotPeer(20)
  const s = scheduler(client)
  const ran: string[] = []
  // No advert arrives between the calls: only our own accounting says the slot is free again.
  for (let i = 0; i < 5; i++) ran.push((await s.invoke('fn', Buffer.from('x'))).ranOn)
  release()
  assert.deepEqual(ran, ['a', 'a', 'a', 'a', 'a'])
  assert.equal(peers.inFlight(peers.get('a')!, 'wasm'), 0)
})

test('a call in flight holds the peer\'s slot: a concurrent call goes elsewhere, not into a BUSY answer', async () => {
  registry.hold(SPEC, CODE)
  peers.upsert(oneSlotAdvert('a'))
  peers.upsert(oneSlotAdvert('b'))
  for (const id of ['a', 'b']) registry.setAdvertised(id, advert(id).functions)
  peers.recordRtt('a', 1)
  peers.recordRtt('b', 2)
  const release = runtime.saturate()
  const client = new OneSlotPeer(50)
  const s = scheduler(client)
  const [x, y] = await Promise.all([s.invoke('fn', Buffer.from('1')), s.invoke('fn', Buffer.from('2'))])
  release()
  assert.deepEqual([x.ranOn, y.ranOn].sort(), ['a', 'b'])
  assert.deepEqual(x.attempts.concat(y.attempts).map(a => a.outcome), ['ok', 'ok'], 'no call was sent to a peer we knew was full')
})

test('a BUSY answer with the peer\'s load marks it full at once: the next call does not try it', async () => {
  registry.hold(SPEC, CODE)
  addPeers(['a', 1], ['b', 5])
  const release = runtime.saturate()
  const sent: string[] = []
  const client: RemoteInvoker = {
    call: async (peer, call) => {
      sent.push(peer)
      // 'a' is full with others' calls, though its last advert said idle: it says so in its answer.
      if (peer === 'a') throw withReportedLoad(new BusyError('all slots busy'), { slots: 2, busy: 2, queued: 0, yours: 0 })
      // A 20 ms function: waiting for the local slot (~10 ms left) would not beat b (5 ms away).
      return { v: 1, type: 'result', id: 1, output: call.input, warm: true, timings: { queueMs: 0, fetchMs: 0, runMs: 20 } }
    }
  }
  const s = scheduler(client)
  const first = await s.invoke('fn', Buffer.from('x'))
  const second = await s.invoke('fn', Buffer.from('x'))
  release()
  assert.deepEqual([first.ranOn, second.ranOn], ['b', 'b'])
  assert.deepEqual(sent, ['a', 'b', 'b'])
  assert.ok(second.ranking.skipped.some(x => x.peerId === 'a'))
})

test('the local queue is bounded by its expected wait against the deadline, not by a count', async () => {
  runtime = new NoopRuntime({ slots: 1, delayMs: 150 })
  registry.hold(SPEC, CODE)
  const s = scheduler(new FakePeers({}))
  s.runTimes.observe(SPEC.sha256, 'wasm', 150)
  // One running and two queued: ~150 ms + 300 ms of work ahead of the next call.
  const ahead = [1, 2, 3].map(async () => await s.invoke('fn', Buffer.from('x'), { policy: 'local', timeoutMs: 5000 }).catch((err: Error) => err))
  await new Promise(resolve => setTimeout(resolve, 20))
  const callsBefore = runtime.calls
  await assert.rejects(s.invoke('fn', Buffer.from('x'), { policy: 'local', timeoutMs: 300 }), (err: Error & { retryAfterMs?: number }) => {
    assert.equal(err.name, 'OverloadedError')
    assert.ok((err.retryAfterMs ?? 0) > 150, `retry after ${err.retryAfterMs}`)
    return true
  })
  assert.equal(runtime.calls, callsBefore, 'the refused call never reached the runtime')
  // A deadline that the queue can meet is admitted, however long the queue.
  const admitted = await s.invoke('fn', Buffer.from('x'), { policy: 'local', timeoutMs: 5000 })
  assert.equal(admitted.local, true)
  await Promise.all(ahead)
})

test('a caller that gives up cancels the call where it runs: the slot is freed and the reason kept', async () => {
  runtime = new NoopRuntime({ slots: 1, delayMs: 10_000 })
  registry.hold(SPEC, CODE)
  const s = scheduler(new FakePeers({}))
  const client = new AbortController()
  const call = s.invoke('fn', Buffer.from('x'), { signal: client.signal })
  await new Promise(resolve => setTimeout(resolve, 20))
  assert.equal(runtime.capacity().busy, 1)
  client.abort(new CancelledError('the client closed the connection'))
  await assert.rejects(call, { name: 'CancelledError' })
  assert.equal(runtime.capacity().busy, 0)
})

test('stopping the scheduler cuts off its calls as interrupted, not as the function\'s failure', async () => {
  runtime = new NoopRuntime({ slots: 1, delayMs: 10_000 })
  registry.hold(SPEC, CODE)
  addPeers(['a', 1])
  const s = scheduler(new FakePeers({ a: 'hang' }))
  s.start()
  const here = s.invoke('fn', Buffer.from('x'))
  const there = s.invoke('fn', Buffer.from('x'), { policy: 'peer', peer: 'a' })
  await new Promise(resolve => setTimeout(resolve, 20))
  s.stop()
  await assert.rejects(here, { name: 'InterruptedError', code: 'INTERRUPTED' })
  await assert.rejects(there, { name: 'InterruptedError' })
  assert.equal(peers.inFlight(peers.get('a')!, 'wasm'), 0)
})

test('a newer version that no trusted manifest vouches for is set aside: the call runs the newest trusted one', async () => {
  registry.hold(SPEC, CODE)
  const forged = specFor('fn', Buffer.from('made up'), { version: 2 })
  peers.upsert(advert('a'))
  registry.setAdvertised('a', [{ name: 'fn', version: 2, sha256: forged.sha256 }])
  const asked: number[] = []
  const trust = {
    authorise: async (ref: { version: number }) => {
      asked.push(ref.version)
      if (ref.version === 2) throw new UntrustedManifestError('the DHT\'s manifest of \'fn\' is v1, which does not vouch for v2')
      return { runtime: SPEC.runtime, size: SPEC.size, memoryBytes: SPEC.memoryBytes, timeoutMs: SPEC.timeoutMs, deployedAt: SPEC.deployedAt, chunks: ['cid-0'] }
    },
    isAuthorised: () => true,
    trustsPeer: () => true
  }
  const client = new FakePeers({})
  const s = new Scheduler({ selfId: 'self', registry, runtimes: new RuntimeSet([runtime]), peers, client, fetcher: noFetch, trust, metrics: new Metrics(() => 0), hold: (spec, code) => { registry.hold(spec, code) } })
  const out = await s.invoke('fn', Buffer.from('hi'))
  assert.equal(out.function.version, 1)
  assert.equal(out.local, true)
  assert.deepEqual(client.sent, [], 'nothing went to the member that advertised v2')
  await s.invoke('fn', Buffer.from('again'))
  assert.equal(asked.filter(v => v === 2).length, 1, 'v2 is not looked up again for every call')
  await assert.rejects(s.invoke('fn@2', Buffer.from('x')), { name: 'FunctionNotFoundError', message: /the swarm has v1$/ })
})

test('a peer\'s calls of versions this agent does not know start at most LOOKUP_BURST look-ups at once, then are BUSY', async () => {
  let lookedUp = 0
  const trust = {
    authorise: async () => { lookedUp++; throw new UntrustedManifestError('no signed manifest in the DHT') },
    isAuthorised: () => false,
    trustsPeer: () => true
  }
  const s = new Scheduler({ selfId: 'self', registry, runtimes: new RuntimeSet([runtime]), peers, client: new FakePeers({}), fetcher: noFetch, trust, metrics: new Metrics(() => 0), hold: () => {} })
  const call = async (peer: string, i: number): Promise<string> => await s.executeOffloaded({ v: WIRE_VERSION, type: 'invoke', id: i, fn: { name: `made-up-${i}`, version: 1, sha256: 'c'.repeat(64) }, input: new Uint8Array(0), deadlineMs: 5000, holders: [] }, peer, AbortSignal.timeout(5000))
    .then(() => 'ran', (err: Error) => err.name)
  const outcomes = await Promise.all(Array.from({ length: LOOKUP_BURST + 10 }, async (_, i) => await call('flooder', i)))
  assert.equal(lookedUp, LOOKUP_BURST)
  assert.equal(outcomes.filter(o => o === 'BusyError').length, 10)
  assert.equal(await call('another', 999), 'UntrustedManifestError', 'another peer has its own budget')
})
