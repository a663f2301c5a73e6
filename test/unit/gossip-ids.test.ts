import { test } from 'node:test'
import assert from 'node:assert/strict'
import { fastMessageId } from '../../agent/swarm/node.js'

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
