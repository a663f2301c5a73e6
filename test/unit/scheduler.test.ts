import { test, beforeEach, afterEach } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Scheduler, type RemoteInvoker, type CodeFetcher } from '../../agent/scheduler.js'
import { FunctionRegistry } from '../../agent/registry.js'
import { PeerTable } from '../../agent/peer-table.js'
import { Metrics } from '../../agent/metrics.js'
import { NoopRuntime } from '../../runtimes/noop.js'
import { RuntimeSet } from '../../runtimes/set.js'
import { BusyError, DeadlineExceededError, FunctionError, PeerGoneError, WIRE_VERSION, type Advert, type InvokeResult } from '../../protocol/index.js'
import { specFor, text } from '../helpers.js'

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
  const trust = { authorise: async () => ({ runtime: SPEC.runtime, size: SPEC.size, memoryBytes: SPEC.memoryBytes, timeoutMs: SPEC.timeoutMs, deployedAt: SPEC.deployedAt, chunks: ['cid-0'] }), isAuthorised: () => true }
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

test('when every place is busy the call fails as overloaded', async () => {
  registry.hold(SPEC, CODE)
  addPeers(['a', 1])
  const release = runtime.saturate()
  await assert.rejects(scheduler(new FakePeers({ a: 'busy' })).invoke('fn', Buffer.from('x')), { name: 'OverloadedError' })
  release()
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
