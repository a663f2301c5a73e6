import { test, beforeEach, afterEach } from 'node:test'
import assert from 'node:assert/strict'
import { existsSync, mkdtempSync, renameSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { FunctionRegistry, SET_ASIDE_MS } from '../../agent/code/registry.js'
import { specFor } from '../helpers.js'

const A = Buffer.from('code a')
const B = Buffer.from('code b')
let dir: string

beforeEach(() => { dir = mkdtempSync(join(tmpdir(), 'edge-registry-')) })
afterEach(() => { rmSync(dir, { recursive: true, force: true }) })

test('resolves the newest version known anywhere, with its holders', () => {
  const r = new FunctionRegistry(dir)
  r.hold(specFor('fn', A, { version: 1 }), A)
  const v2 = specFor('fn', B, { version: 2 })
  r.setAdvertised('peer-x', [{ name: 'fn', version: 2, sha256: v2.sha256 }])
  const known = r.resolve('fn')
  assert.equal(known.ref.version, 2)
  assert.equal(known.local, false)
  assert.deepEqual([...known.holders], ['peer-x'])
  assert.equal(r.highestVersion('fn'), 2)
})

test('two functions sharing one artifact keep it until both are gone', async () => {
  const r = new FunctionRegistry(dir)
  const one = specFor('one', A)
  const two = specFor('two', A)
  r.hold(one, A)
  r.hold(two, A)
  r.tombstone('one', 1)
  assert.deepEqual(await r.readCode(one.sha256), A)
  assert.equal(r.specOf(two)?.name, 'two')
  r.tombstone('two', 1)
  assert.equal(await r.readCode(one.sha256), undefined)
})

test('a tombstone hides every version up to it, from adverts too', () => {
  const r = new FunctionRegistry(dir)
  const spec = specFor('fn', A, { version: 3 })
  r.hold(spec, A)
  r.tombstone('fn', 3)
  r.setAdvertised('peer-x', [{ name: 'fn', version: 3, sha256: spec.sha256 }])
  assert.throws(() => r.resolve('fn'), { name: 'FunctionNotFoundError' })
  assert.equal(r.highestVersion('fn'), 3, 'a redeploy gets version 4')
})

test('held functions and tombstones survive a restart', async () => {
  const spec = specFor('fn', A)
  const first = new FunctionRegistry(dir)
  first.hold(spec, A)
  first.tombstone('gone', 5)
  const second = new FunctionRegistry(dir)
  assert.equal(second.localSpec('fn')?.sha256, spec.sha256)
  assert.deepEqual(await second.readCode(spec.sha256), A)
  assert.equal(second.isDeleted('gone', 5), true)
})

test('code held under the old .wasm name is kept, renamed to .code', async () => {
  const spec = specFor('fn', A)
  new FunctionRegistry(dir).hold(spec, A)
  renameSync(join(dir, 'functions', `${spec.sha256}.code`), join(dir, 'functions', `${spec.sha256}.wasm`))
  const again = new FunctionRegistry(dir)
  assert.deepEqual(await again.readCode(spec.sha256), A)
  assert.ok(existsSync(join(dir, 'functions', `${spec.sha256}.code`)))
  assert.ok(!existsSync(join(dir, 'functions', `${spec.sha256}.wasm`)))
})

test('forgetting a peer drops what it held', () => {
  const r = new FunctionRegistry(dir)
  const spec = specFor('fn', A)
  r.setAdvertised('peer-x', [{ name: 'fn', version: 1, sha256: spec.sha256 }])
  r.forgetPeer('peer-x')
  assert.throws(() => r.resolve('fn'), { name: 'FunctionNotFoundError' })
})

test('keeps older versions, resolves NAME@VERSION, and drops versions beyond those kept', async () => {
  const r = new FunctionRegistry(dir, { versionsKept: 2 })
  const codes = [Buffer.from('v1'), Buffer.from('v2'), Buffer.from('v3')]
  const specs = codes.map((c, i) => specFor('fn', c, { version: i + 1 }))
  r.hold(specs[0]!, codes[0]!)
  r.hold(specs[1]!, codes[1]!)
  assert.equal(r.resolve('fn').ref.version, 2)
  assert.equal(r.resolve('fn', 1).ref.sha256, specs[0]!.sha256)
  assert.equal(r.holds(specs[0]!), true)
  const { dropped } = r.hold(specs[2]!, codes[2]!)
  assert.deepEqual(dropped.map(s => s.version), [1])
  assert.equal(await r.readCode(specs[0]!.sha256), undefined, 'the dropped version\'s code is gone')
  assert.deepEqual(r.versions('fn').map(k => k.ref.version), [3, 2])
  assert.throws(() => r.resolve('fn', 1), { name: 'FunctionNotFoundError', message: /version 1 of 'fn' is no longer kept: the swarm has v3, v2/ })
  assert.throws(() => r.resolve('fn', 9), { message: /is not deployed/ })
  const restarted = new FunctionRegistry(dir, { versionsKept: 2 })
  assert.deepEqual(restarted.localSpecs().map(s => s.version).sort(), [2, 3])
})

test('a version older than those kept is not held, though known from an advert', () => {
  const r = new FunctionRegistry(dir, { versionsKept: 1 })
  const old = specFor('fn', A, { version: 1 })
  r.setAdvertised('peer-x', [{ name: 'fn', version: 2, sha256: specFor('fn', B).sha256 }])
  assert.deepEqual(r.hold(old, A).dropped, [])
  assert.equal(r.holds(old), false)
})

test('within its quota, the registry evicts the least recently used code that enough others hold', () => {
  const big = (tag: string): Buffer => Buffer.alloc(400, tag)
  const r = new FunctionRegistry(dir, { quotaBytes: 1000, replicas: 2 })
  const [a, b, c] = ['a', 'b', 'c'].map(n => ({ code: big(n), spec: specFor(n, big(n)) }))
  r.hold(a!.spec, a!.code)
  r.hold(b!.spec, b!.code)
  // Nothing may go: fewer than 2 other agents hold a or b.
  assert.equal(r.hasRoom(400, c!.spec.sha256), false)
  assert.throws(() => r.hold(c!.spec, c!.code), { name: 'StorageFullError', message: /no room for c v1 \(400 bytes\)/ })
  for (const peer of ['p1', 'p2']) r.setAdvertised(peer, [a!.spec, b!.spec].map(s => ({ name: s.name, version: s.version, sha256: s.sha256 })))
  r.touch(a!.spec.sha256) // b is now the least recently used
  assert.equal(r.hasRoom(400, c!.spec.sha256), true)
  const { dropped } = r.hold(c!.spec, c!.code)
  assert.deepEqual(dropped.map(s => s.name), ['b'])
  assert.equal(r.holds(a!.spec), true)
  assert.equal(r.holds(b!.spec), false)
  assert.equal(r.bytesHeld(), 800)
  // Code already held costs nothing more.
  assert.equal(r.hasRoom(400, a!.spec.sha256), true)
})

test('an untrusted peer\'s advert counts for nothing: no version, no holder, no copy', () => {
  const r = new FunctionRegistry(dir, { vouches: (peer) => peer !== 'rogue' })
  const v1 = specFor('fn', A, { version: 1 })
  const v2 = specFor('fn', B, { version: 2 })
  r.learn(v1)
  r.setAdvertised('rogue', [v1, v2, { name: 'other', version: 1, sha256: v2.sha256 }].map(s => ({ name: s.name, version: s.version, sha256: s.sha256 })))
  assert.equal(r.resolve('fn').ref.version, 1)
  assert.deepEqual([...r.resolve('fn').holders], [], 'a member that says it holds a copy could talk the swarm out of keeping real ones')
  assert.throws(() => r.resolve('other'), { name: 'FunctionNotFoundError' })
  r.setAdvertised('friend', [{ name: 'fn', version: 2, sha256: v2.sha256 }])
  assert.equal(r.resolve('fn').ref.version, 2, 'a trusted agent holds only code a trusted key signed')
  assert.deepEqual([...r.resolve('fn').holders], ['friend'])
})

test('a version set aside with its untrusted signer stays aside; one with no trusted record comes back after a while', (t) => {
  t.mock.timers.enable({ apis: ['Date'], now: 1_000_000 })
  const r = new FunctionRegistry(dir)
  const v1 = specFor('fn', A, { version: 1 })
  const v2 = specFor('fn', B, { version: 2 })
  const v3 = specFor('fn', Buffer.from('code c'), { version: 3 })
  r.hold(v1, A)
  r.setAdvertised('peer-x', [v2, v3].map(s => ({ name: s.name, version: s.version, sha256: s.sha256 })))
  assert.equal(r.resolve('fn').ref.version, 3)
  r.refuse(v3, 'untrusted-key')
  r.refuse(v2)
  assert.equal(r.resolve('fn').ref.version, 1, 'the newest version not set aside')
  assert.deepEqual(r.refusedSigners('fn'), ['untrusted-key'])
  t.mock.timers.tick(SET_ASIDE_MS - 1)
  assert.equal(r.resolve('fn').ref.version, 1)
  t.mock.timers.tick(1)
  assert.equal(r.resolve('fn').ref.version, 2, 'looked at again: its record may have arrived since')
  r.forgive('untrusted-key')
  assert.equal(r.resolve('fn').ref.version, 3, 'its signer is trusted now')
  assert.deepEqual(r.refusedSigners('fn'), [])
})
