import { test, beforeEach, afterEach } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { FunctionRegistry } from '../../agent/registry.js'
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

test('forgetting a peer drops what it held', () => {
  const r = new FunctionRegistry(dir)
  const spec = specFor('fn', A)
  r.setAdvertised('peer-x', [{ name: 'fn', version: 1, sha256: spec.sha256 }])
  r.forgetPeer('peer-x')
  assert.throws(() => r.resolve('fn'), { name: 'FunctionNotFoundError' })
})
