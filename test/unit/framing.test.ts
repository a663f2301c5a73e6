import { test } from 'node:test'
import assert from 'node:assert/strict'
import * as varint from 'uint8-varint'
import { encode, FramedStream } from '../../protocol/index.js'
import type { Stream } from '@libp2p/interface'

/** Just enough of a libp2p stream to push bytes at a FramedStream. */
class FakeStream extends EventTarget {
  status = 'open'
  aborted: Error | undefined
  deliver (data: Uint8Array): void {
    this.dispatchEvent(Object.assign(new Event('message'), { data }))
  }

  abort (err: Error): void { this.aborted = err }
}

function frame (message: unknown): Uint8Array {
  const body = encode(message)
  return Buffer.concat([varint.encode(body.byteLength), body])
}

test('many large frames arriving in one burst are all decoded', () => {
  const stream = new FakeStream()
  const got: unknown[] = []
  // eslint-disable-next-line no-new
  new FramedStream(stream as unknown as Stream, { maxFrameBytes: 300 * 1024, onMessage: (m) => got.push(m) })
  const frames = Array.from({ length: 40 }, (_, i) => frame({ i, data: new Uint8Array(256 * 1024).fill(i) }))
  stream.deliver(Buffer.concat(frames))
  assert.equal(got.length, 40)
  assert.equal((got[39] as { i: number }).i, 39)
  assert.equal(stream.aborted, undefined)
})

test('a frame above the limit aborts the stream instead of buffering it', () => {
  const stream = new FakeStream()
  const got: unknown[] = []
  // eslint-disable-next-line no-new
  new FramedStream(stream as unknown as Stream, { maxFrameBytes: 1024, onMessage: (m) => got.push(m) })
  stream.deliver(frame({ data: new Uint8Array(4096) }))
  assert.equal(got.length, 0)
  assert.ok(stream.aborted)
})

test('garbage that is not CBOR aborts the stream', () => {
  const stream = new FakeStream()
  // eslint-disable-next-line no-new
  new FramedStream(stream as unknown as Stream, { maxFrameBytes: 1024, onMessage: () => {} })
  stream.deliver(Uint8Array.from([3, 0xff, 0xff, 0xff]))
  assert.equal(stream.aborted?.name, 'InvalidMessageError')
})
