import { test } from 'node:test'
import assert from 'node:assert/strict'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { MAX_LOOKUPS, MISS_TTL_MS, Trust } from '../../agent/code/trust.js'
import { openRecord, signRecord, WIRE_VERSION, type Manifest } from '../../protocol/index.js'
import type { Resolved } from '../../agent/code/manifests.js'

const REF = { name: 'fn', version: 2, sha256: 'b'.repeat(64) }

async function signed (key: Awaited<ReturnType<typeof generateKeyPair>>, extra: Partial<Manifest> = {}): Promise<Resolved> {
  const record = await signRecord({
    v: WIRE_VERSION, type: 'manifest', name: 'fn', version: 2, runtime: 'wasm', entry: '_start',
    limits: { memoryBytes: 16 << 20, timeoutMs: 1500, concurrency: 0 }, labels: {}, env: {},
    chunks: ['bafkreiadsbmmn4waznesyuz3bjgrj33xzqhxrk6mz3ksq7meugrachh3qe'], size: 10, sha256: 'b'.repeat(64), deployedAt: 1, ...extra
  }, key)
  return { record: await openRecord(record), source: 'dht' }
}

function trust (self: string, trusted: string[], resolved: Resolved | undefined): Trust {
  return new Trust({ selfId: self, trusted, manifests: { find: async () => resolved } })
}

test('a manifest signed by a trusted key is authorised, with its limits and chunks', async () => {
  const deployer = await generateKeyPair('Ed25519')
  const id = peerIdFromPrivateKey(deployer).toString()
  const t = trust('self', [id], await signed(deployer))
  assert.deepEqual(await t.authorise(REF), {
    runtime: 'wasm', size: 10, memoryBytes: 16 << 20, timeoutMs: 1500, deployedAt: 1, chunks: ['bafkreiadsbmmn4waznesyuz3bjgrj33xzqhxrk6mz3ksq7meugrachh3qe']
  })
  assert.equal(t.isAuthorised(REF), true)
})

test('a manifest signed by an unknown key is refused, naming the key to trust', async () => {
  const stranger = await generateKeyPair('Ed25519')
  const id = peerIdFromPrivateKey(stranger).toString()
  const t = trust('self', [], await signed(stranger))
  await assert.rejects(t.authorise(REF), { name: 'UntrustedManifestError', message: new RegExp(`signed by ${id}, and this agent does not trust it \\('edge-agent trust add ${id}'`) })
  assert.equal(t.isAuthorised(REF), false)
})

test('a manifest of another version or code, or none at all, vouches for nothing', async () => {
  const self = await generateKeyPair('Ed25519')
  const id = peerIdFromPrivateKey(self).toString()
  await assert.rejects(trust(id, [], await signed(self, { version: 3 })).authorise(REF), { name: 'UntrustedManifestError', message: /is v3/ })
  await assert.rejects(trust(id, [], await signed(self, { sha256: 'c'.repeat(64) })).authorise(REF), { name: 'UntrustedManifestError' })
  await assert.rejects(trust(id, [], undefined).authorise(REF), { name: 'UntrustedManifestError', message: /no signed manifest/ })
})

test('a trusted tombstone makes the version unknown', async () => {
  const self = await generateKeyPair('Ed25519')
  const record = await signRecord({ v: WIRE_VERSION, type: 'tombstone', name: 'fn', version: 2, deployedAt: 1 }, self)
  const t = trust(peerIdFromPrivateKey(self).toString(), [], { record: await openRecord(record), source: 'dht' })
  await assert.rejects(t.authorise(REF), { name: 'FunctionNotFoundError' })
})

test('what this agent deployed itself is authorised without a look-up', async () => {
  const t = trust('self', [], undefined)
  t.allow({ ...REF, runtime: 'wasm', size: 10, memoryBytes: 1 << 20, timeoutMs: 100, deployedAt: 1 }, ['cid'])
  assert.deepEqual(await t.authorise(REF), { runtime: 'wasm', size: 10, memoryBytes: 1 << 20, timeoutMs: 100, deployedAt: 1, chunks: ['cid'] })
})

test('a tombstone from an untrusted key deletes nothing', async () => {
  const stranger = await generateKeyPair('Ed25519')
  const record = await signRecord({ v: WIRE_VERSION, type: 'tombstone', name: 'fn', version: 2, deployedAt: 1 }, stranger)
  const t = trust('self', [], { record: await openRecord(record), source: 'dht' })
  await assert.rejects(t.authorise(REF), { name: 'UntrustedManifestError' })
})

test('look-ups are bounded: past MAX_LOOKUPS in flight, a call is BUSY at once; a version found unvouched is not looked up again for a while', async (t) => {
  t.mock.timers.enable({ apis: ['Date'], now: 1_000_000 })
  let asked = 0
  let release = (): void => {}
  const held = new Promise<undefined>((resolve) => { release = () => { resolve(undefined) } })
  const tr = new Trust({ selfId: 'self', trusted: [], manifests: { find: async () => { asked++; return await held } } })
  const refs = Array.from({ length: MAX_LOOKUPS + 4 }, (_, i) => ({ name: `made-up-${i}`, version: 1, sha256: 'a'.repeat(64) }))
  const outcomes = refs.map(async (ref) => await tr.authorise(ref).then(() => 'ran', (err: Error) => err.name))
  release()
  const names = await Promise.all(outcomes)
  assert.equal(asked, MAX_LOOKUPS)
  assert.deepEqual(names.filter(n => n === 'BusyError').length, 4)
  assert.deepEqual(names.filter(n => n === 'UntrustedManifestError').length, MAX_LOOKUPS)
  // The same made-up version again: answered from memory, with the same reason.
  await assert.rejects(tr.authorise(refs[0] as typeof REF), { name: 'UntrustedManifestError', message: /no signed manifest/ })
  assert.equal(asked, MAX_LOOKUPS)
  t.mock.timers.tick(MISS_TTL_MS)
  await assert.rejects(tr.authorise(refs[0] as typeof REF), { name: 'UntrustedManifestError' })
  assert.equal(asked, MAX_LOOKUPS + 1, 'looked up again once the miss is old: it may have been deployed since')
})

test('trust changes apply at once: a key added vouches at the next call (its miss forgotten), a key removed takes its versions and peer with it', async () => {
  const deployer = await generateKeyPair('Ed25519')
  const id = peerIdFromPrivateKey(deployer).toString()
  const t = trust('self', [], await signed(deployer))
  await assert.rejects(t.authorise(REF), { name: 'UntrustedManifestError' })
  assert.deepEqual(t.setTrusted([id]), { added: [id], removed: [] })
  assert.equal(t.trustsPeer(id), true)
  assert.equal((await t.authorise(REF)).timeoutMs, 1500)
  // What this agent deployed itself stays; what the removed key signed goes.
  const own = { name: 'own', version: 1, sha256: 'c'.repeat(64) }
  t.allow({ ...own, runtime: 'wasm', size: 10, memoryBytes: 1 << 20, timeoutMs: 100, deployedAt: 1 }, ['cid'])
  assert.deepEqual(t.setTrusted([]), { added: [], removed: [id] })
  assert.equal(t.trustsPeer(id), false)
  assert.equal(t.isAuthorised(REF), false)
  assert.equal(t.isAuthorised(own), true)
  await assert.rejects(t.authorise(REF), { name: 'UntrustedManifestError', message: new RegExp(`signed by ${id}`) })
})
