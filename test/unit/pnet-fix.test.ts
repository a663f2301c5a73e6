import { test } from 'node:test'
import assert from 'node:assert/strict'
import { createRequire } from 'node:module'
import { cipherMemoryBytes } from '../../agent/swarm/pnet-fix.js'

const require = createRequire(import.meta.url)
const XSalsa20 = require('xsalsa20') as new (nonce: Uint8Array, key: Uint8Array) => { update: (input: Uint8Array) => Uint8Array }

test('pnet\'s cipher memory stays bounded when many streams move large buffers', () => {
  const nonce = new Uint8Array(24).fill(7)
  const key = new Uint8Array(32).fill(9)
  const ciphers = Array.from({ length: 4 }, () => [new XSalsa20(nonce, key), new XSalsa20(nonce, key)] as const)
  const big = new Uint8Array(4 * 1024 * 1024).map((_, i) => i & 0xff)
  // 4 pairs × 40 × 4 MiB = 640 MiB through the shared memory: unpatched, it dies near 60 MB.
  for (let round = 0; round < 40; round++) {
    for (const [enc, dec] of ciphers) {
      const back = dec.update(enc.update(big))
      assert.equal(back[12345], big[12345])
    }
  }
  assert.ok(cipherMemoryBytes() < 64 * 1024 * 1024, `cipher memory ${cipherMemoryBytes()} bytes`)
})
