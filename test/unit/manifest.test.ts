import { test } from 'node:test'
import assert from 'node:assert/strict'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { encode as cborEncode, decode as cborDecode } from 'cbor-x'
import {
  chunk, cidOf, matches, parseCid, CHUNK_BYTES, manifestKey, newerRecord, openRecord, selectManifestRecord, signRecord, trustedManifestSelector, trustedManifestValidator,
  parseTarget, validateManifestRecord, WIRE_VERSION, type Manifest
} from '../../protocol/index.js'

function manifest (extra: Partial<Manifest> = {}): Omit<Manifest, 'deployer'> {
  const code = Buffer.from('code of fn')
  return {
    v: WIRE_VERSION,
    type: 'manifest',
    name: 'fn',
    version: 1,
    runtime: 'wasm',
    entry: '_start',
    limits: { memoryBytes: 64 << 20, timeoutMs: 5000, concurrency: 0 },
    labels: {},
    env: {},
    chunks: chunk(code).map(c => c.cid.toString()),
    size: code.byteLength,
    sha256: 'a'.repeat(64),
    deployedAt: 1000,
    ...extra
  }
}

test('code is cut into 1 MiB chunks named by their sha256 CIDs', () => {
  const code = new Uint8Array(CHUNK_BYTES * 2 + 10).map((_, i) => i % 251)
  const chunks = chunk(code)
  assert.deepEqual(chunks.map(c => c.bytes.byteLength), [CHUNK_BYTES, CHUNK_BYTES, 10])
  assert.ok(chunks.every(c => matches(c.cid, c.bytes)))
  assert.equal(matches(chunks[0]!.cid, chunks[1]!.bytes), false)
  assert.ok(parseCid(chunks[2]!.cid.toString()).equals(chunks[2]!.cid))
  assert.equal(cidOf(Buffer.from('x')).toString(), cidOf(Buffer.from('x')).toString())
  assert.throws(() => parseCid('not-a-cid'), { name: 'InvalidMessageError' })
})

test('a signed manifest opens with its signer\'s peer id', async () => {
  const key = await generateKeyPair('Ed25519')
  const record = await signRecord(manifest(), key)
  const opened = await openRecord(record)
  assert.equal(opened.body.type, 'manifest')
  assert.equal(opened.body.name, 'fn')
  assert.equal(opened.signer, peerIdFromPrivateKey(key).toString())
  await validateManifestRecord(manifestKey('fn'), record)
})

test('a tampered manifest fails its signature', async () => {
  const key = await generateKeyPair('Ed25519')
  const record = cborDecode(await signRecord(manifest(), key)) as { body: Uint8Array, signature: Uint8Array }
  const body = cborDecode(record.body) as Manifest
  const forged = cborEncode({ ...record, body: cborEncode({ ...body, limits: { ...body.limits, memoryBytes: 1 << 30 } }) })
  await assert.rejects(openRecord(forged), { name: 'InvalidMessageError', message: /bad signature/ })
})

test('a record under another function\'s key, an oversize or malformed record, is refused', async () => {
  const key = await generateKeyPair('Ed25519')
  const record = await signRecord(manifest(), key)
  await assert.rejects(validateManifestRecord(manifestKey('other'), record), { message: /stored under other/ })
  await assert.rejects(openRecord(new Uint8Array(20_000)), { name: 'MessageTooLargeError' })
  await assert.rejects(openRecord(Uint8Array.from([0xff, 0x01])), { name: 'InvalidMessageError' })
  await assert.rejects(signRecord(manifest({ chunks: ['nope'] }), key), { name: 'InvalidMessageError' })
})

test('the selector picks the highest version, then the newest, and a tombstone over its version', async () => {
  const key = await generateKeyPair('Ed25519')
  const v1 = await signRecord(manifest({ version: 1, deployedAt: 5 }), key)
  const v2old = await signRecord(manifest({ version: 2, deployedAt: 1 }), key)
  const v2new = await signRecord(manifest({ version: 2, deployedAt: 2 }), key)
  const tomb = await signRecord({ v: WIRE_VERSION, type: 'tombstone', name: 'fn', version: 2, deployedAt: 0 }, key)
  const k = manifestKey('fn')
  assert.equal(await selectManifestRecord(k, [v1, v2old, v2new]), 2)
  assert.equal(await selectManifestRecord(k, [v2new, v1]), 0)
  assert.equal(await selectManifestRecord(k, [v2new, tomb, v1]), 1)
  assert.equal(await selectManifestRecord(k, [Uint8Array.from([1, 2, 3]), v1]), 1, 'an invalid record never wins')
  const body = (await openRecord(tomb)).body
  assert.equal(newerRecord(body, (await openRecord(v2new)).body), true)
})

test('an agent\'s DHT validator and selector ignore records from keys it does not trust', async () => {
  const mine = await generateKeyPair('Ed25519')
  const stranger = await generateKeyPair('Ed25519')
  const me = peerIdFromPrivateKey(mine).toString()
  const trusts = (signer: string): boolean => signer === me
  const k = manifestKey('fn')
  const trusted = await signRecord(manifest({ version: 1 }), mine)
  const buried = await signRecord(manifest({ version: 9 }), stranger)
  const tomb = await signRecord({ v: WIRE_VERSION, type: 'tombstone', name: 'fn', version: 9, deployedAt: 0 }, stranger)
  await trustedManifestValidator(trusts)(k, trusted)
  await assert.rejects(trustedManifestValidator(trusts)(k, buried), { message: /untrusted/ })
  assert.equal(await trustedManifestSelector(trusts)(k, [buried, tomb, trusted]), 2)
})

test('a version key holds only that version\'s manifest', async () => {
  const key = await generateKeyPair('Ed25519')
  const v2 = await signRecord(manifest({ version: 2 }), key)
  await validateManifestRecord(manifestKey('fn', 2), v2)
  await validateManifestRecord(manifestKey('fn'), v2)
  await assert.rejects(validateManifestRecord(manifestKey('fn', 3), v2), { message: /manifest v2 stored under version 3/ })
  const tomb = await signRecord({ v: WIRE_VERSION, type: 'tombstone', name: 'fn', version: 2, deployedAt: 0 }, key)
  await assert.rejects(validateManifestRecord(manifestKey('fn', 2), tomb), { message: /tombstone v2 stored under version 2/ })
  await assert.rejects(validateManifestRecord(new TextEncoder().encode('/edgefn/fn/02'), v2), { message: /not an \/edgefn/ })
})

test('NAME@VERSION parses, and bad forms are clear errors', () => {
  assert.deepEqual(parseTarget('echo'), { name: 'echo', version: undefined })
  assert.deepEqual(parseTarget('echo@12'), { name: 'echo', version: 12 })
  assert.throws(() => parseTarget('echo@'), { name: 'BadRequestError', message: /bad version '' in 'echo@'/ })
  assert.throws(() => parseTarget('echo@x'), { message: /bad version 'x'/ })
  assert.throws(() => parseTarget('Echo@1'), { message: /bad function name 'Echo'/ })
})

test('a container function\'s manifest carries its entry, env and container settings; bad ones are refused', async () => {
  const key = await generateKeyPair('Ed25519')
  const body = manifest({ runtime: 'node', entry: 'src/index.js', env: { GREETING: 'hi' }, container: { keepaliveMs: 30_000, concurrency: 4, singleUse: false, cpus: 0.5, pids: 32 } })
  const opened = await openRecord(await signRecord(body, key))
  assert.ok(opened.body.type === 'manifest')
  assert.equal(opened.body.entry, 'src/index.js')
  assert.deepEqual(opened.body.env, { GREETING: 'hi' })
  assert.deepEqual(opened.body.container, { keepaliveMs: 30_000, concurrency: 4, singleUse: false, cpus: 0.5, pids: 32 })
  const bad: Array<[Partial<Manifest>, RegExp]> = [
    [{ runtime: 'python', entry: '../escape.py' }, /bad entry/],
    [{ runtime: 'node', entry: 'index.js', container: { concurrency: 0 } }, /container\.concurrency: out of range/],
    [{ runtime: 'node', entry: 'index.js', container: { network: 'yes' as unknown as boolean } }, /container\.network: not a boolean/],
    [{ runtime: 'binary', entry: 'main', env: { EDGE_ENTRY: '/etc/passwd' } }, /env\.EDGE_ENTRY: bad name/],
    [{ runtime: 'ruby' as 'node', entry: 'main.rb' }, /unknown runtime ruby/]
  ]
  for (const [extra, message] of bad) {
    // The check that refuses them here runs on every record an agent opens, too.
    await assert.rejects(signRecord(manifest(extra), key), { name: 'InvalidMessageError', message })
  }
})
