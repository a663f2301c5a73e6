import { test, beforeEach, afterEach } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Replicator } from '../../agent/code/replicator.js'
import { FunctionRegistry } from '../../agent/code/registry.js'
import { PeerTable } from '../../agent/swarm/peer-table.js'
import { chunk, WIRE_VERSION, type Advert, type FunctionRef, type FunctionSpec } from '../../protocol/index.js'
import type { FetchService } from '../../agent/code/fetch.js'
import type { ManifestStore } from '../../agent/code/manifests.js'
import { specFor } from '../helpers.js'

const SIGNER = 'deployer'
const CODE = Buffer.from('replicated code')
let dir: string

beforeEach(() => { dir = mkdtempSync(join(tmpdir(), 'edge-replicator-')) })
afterEach(() => { rmSync(dir, { recursive: true, force: true }) })

function advert (peerId: string, functions: FunctionRef[], trusted: string[]): Advert {
  return {
    v: WIRE_VERSION, type: 'advert', peerId, addrs: [], arch: 'x64', platform: 'linux', cpus: 2, memTotal: 1, memFree: 1,
    runtimes: [{ kind: 'wasm', slots: 2, busy: 0 }], queue: 0, labels: {}, warm: [], functions, trusted, seq: 1, sentAt: Date.now()
  }
}

/** A swarm view: `self`, a holder, two peers that trust the deployer and two that do not. */
let setups = 0

function setup (name: string, signerKnown: boolean, selfTrusts = true): { replicator: Replicator, held: FunctionSpec[] } {
  const spec = specFor(name, CODE)
  const ref = { name, version: 1, sha256: spec.sha256 }
  const registry = new FunctionRegistry(join(dir, String(setups++)))
  registry.learn(spec)
  const peers = new PeerTable({ expiryMs: 60_000 })
  const peerAdverts = [advert('holder', [ref], [SIGNER]), advert('trusting', [], [SIGNER]), advert('wary-1', [], []), advert('wary-2', [], [])]
  for (const a of peerAdverts) {
    peers.upsert(a)
    registry.setAdvertised(a.peerId, a.functions)
  }
  const chunks = chunk(CODE).map(c => c.cid.toString())
  const body = { type: 'manifest', name, version: 1, sha256: spec.sha256, size: spec.size, runtime: 'wasm', limits: { memoryBytes: spec.memoryBytes, timeoutMs: spec.timeoutMs, concurrency: 0 }, deployedAt: spec.deployedAt, chunks, entry: '_start', env: {}, labels: {} }
  const manifests = {
    find: async () => ({ record: { body, signer: SIGNER }, source: 'gossip' }),
    provide: async () => 1,
    signerOf: () => signerKnown ? SIGNER : undefined
  } as unknown as ManifestStore
  const fetcher = { fetchChunks: async () => ({ code: CODE, from: ['holder'] }) } as unknown as FetchService
  const held: FunctionSpec[] = []
  const replicator = new Replicator({
    selfId: 'self', replicas: 3, registry, peers, manifests, fetcher, trusts: (s) => selfTrusts && s === SIGNER, trustsPeer: () => true, signerOf: (r) => manifests.signerOf(r), hold: (s) => { held.push(s) }
  })
  return { replicator, held }
}

test('replicas go to agents that trust the deployer: the next in the ranking stands in for one that does not', async () => {
  // A name for which, ranking every live agent, this agent would not be among the two chosen:
  // agents that do not trust the deployer rank above it.
  const everyone = ['self', 'trusting', 'wary-1', 'wary-2']
  const name = Array.from({ length: 200 }, (_, i) => `fn${i}`).find(n => !Replicator.rank(n, everyone).slice(0, 2).includes('self'))
  assert.ok(name)
  const blind = setup(name, false)
  await blind.replicator.reconcile()
  assert.deepEqual(blind.held, [], 'without knowing the signer, the ranking picks agents that would decline')
  const aware = setup(name, true)
  await aware.replicator.reconcile()
  assert.deepEqual(aware.held.map(s => s.name), [name], 'knowing it, this agent takes a copy')
})

test('an agent does not take a copy of a function whose deployer it does not trust', async () => {
  const name = Array.from({ length: 200 }, (_, i) => `fn${i}`).find(n => Replicator.rank(n, ['self', 'trusting']).slice(0, 2).includes('self'))
  assert.ok(name)
  const trusting = setup(name, true)
  await trusting.replicator.reconcile()
  assert.equal(trusting.held.length, 1)
  const wary = setup(name, true, false)
  await wary.replicator.reconcile()
  assert.deepEqual(wary.held, [])
})
