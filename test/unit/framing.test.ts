import { test } from 'node:test'
import assert from 'node:assert/strict'
import * as varint from 'uint8-varint'
import { encode, FramedStream, FRAMES_PER_TURN } from '../../protocol/index.js'
import { Uint8ArrayList } from 'uint8arraylist'
import type { Stream } from '@libp2p/interface'

/** Just enough of a libp2p stream to push bytes at a FramedStream. */
class FakeStream extends EventTarget {
  status = 'open'
  aborted: Error | undefined
  deliver (data: Uint8Array): void {
    this.dispatchEvent(Object.assign(new Event('message'), { data }))
  }

  abort (err: Error): void { this.aborted = err }

  /** What was sent, one entry per send. */
  sent: Uint8Array[] = []
  writeStatus = 'writable'
  send (data: Uint8ArrayList): boolean {
    if (this.writeStatus !== 'writable') throw new Error(`Cannot write to a stream that is ${this.writeStatus}`)
    this.sent.push(data.subarray())
    return true
  }
}

function frame (message: unknown): Uint8Array {
  const body = encode(message)
  return Buffer.concat([varint.encode(body.byteLength), body])
}

test('many large frames arriving in one burst are all decoded, over a few turns of the event loop', async () => {
  const stream = new FakeStream()
  const got: unknown[] = []
  // eslint-disable-next-line no-new
  new FramedStream(stream as unknown as Stream, { maxFrameBytes: 300 * 1024, onMessage: (m) => got.push(m) })
  const frames = Array.from({ length: 40 }, (_, i) => frame({ i, data: new Uint8Array(256 * 1024).fill(i) }))
  stream.deliver(Buffer.concat(frames))
  for (let turn = 0; turn < 40 && got.length < 40; turn++) await new Promise(resolve => setImmediate(resolve))
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

test('frames cut anywhere, inside their length prefixes too, are decoded whole and in order', async () => {
  const stream = new FakeStream()
  const got: Array<{ i: number, data: Uint8Array }> = []
  // eslint-disable-next-line no-new
  new FramedStream(stream as unknown as Stream, { maxFrameBytes: 64 * 1024, onMessage: (m) => got.push(m as { i: number, data: Uint8Array }) })
  // Bodies of 1-, 2- and 3-byte length prefixes.
  const sizes = [10, 200, 20_000, 3, 40_000]
  const bytes = Buffer.concat(sizes.map((n, i) => frame({ i, data: new Uint8Array(n).fill(i + 1) })))
  for (const b of bytes) stream.deliver(Uint8Array.of(b))
  // The same again, as one list of pieces of 1 to 7 bytes.
  const pieces = new Uint8ArrayList()
  for (let off = 0; off < bytes.byteLength;) {
    const n = 1 + (off % 7)
    pieces.append(bytes.subarray(off, off + n))
    off += n
  }
  stream.deliver(pieces as unknown as Uint8Array)
  for (let turn = 0; turn < 20 && got.length < 10; turn++) await new Promise(resolve => setImmediate(resolve))
  assert.deepEqual(got.map(m => m.i), [0, 1, 2, 3, 4, 0, 1, 2, 3, 4])
  assert.deepEqual(got.map(m => m.data.byteLength), [...sizes, ...sizes])
  assert.ok(got.every(m => m.data.every(x => x === m.i + 1)))
  assert.equal(stream.aborted, undefined)
})

test('messages written in one run of the microtask queue leave in one send, in order; a write to a closed stream fails', async () => {
  const stream = new FakeStream()
  const framed = new FramedStream(stream as unknown as Stream, { maxFrameBytes: 1024, onMessage: () => {} })
  await Promise.all([1, 2, 3].map(async (i) => { await Promise.resolve(); await framed.write({ i }) }))
  await framed.write({ i: 4 })
  assert.equal(stream.sent.length, 2)
  assert.deepEqual(Buffer.from(stream.sent[0] as Uint8Array), Buffer.concat([frame({ i: 1 }), frame({ i: 2 }), frame({ i: 3 })]))
  assert.deepEqual(Buffer.from(stream.sent[1] as Uint8Array), frame({ i: 4 }))
  stream.writeStatus = 'closed'
  await assert.rejects(framed.write({ i: 5 }), /Cannot write to a stream that is closed/)
  await assert.rejects(framed.write({ big: new Uint8Array(2048) }), RangeError)
})

test('over a real stream, a burst of frames is handled a turn at a time, in order, all of it before the close', async () => {
  const { bareNodes, eventually } = await import('../helpers.js')
  const { nodes: [server, client], close } = await bareNodes('server', 'client')
  try {
    await Promise.all([server.start(), client.start()])
    const got: number[] = []
    let inBetween: number | undefined
    let closedAfter: number | undefined
    await server.handle('/edge-test/burst/1', (stream) => {
      // eslint-disable-next-line no-new
      new FramedStream(stream, {
        maxFrameBytes: 1024,
        onMessage: (m) => {
          // Something else the agent has to do, asked for as the first frame is handled.
          if (got.length === 0) setImmediate(() => { inBetween = got.length })
          got.push((m as { i: number }).i)
        },
        onClose: () => { closedAfter = got.length }
      })
      // This side sends nothing: the stream closes once the client closes its end.
      void stream.close()
    })
    await client.dial(server.getMultiaddrs()[0] ?? assert.fail('no address'))
    const stream = await client.dialProtocol(server.peerId, '/edge-test/burst/1')
    const n = 1000
    stream.send(Buffer.concat(Array.from({ length: n }, (_, i) => frame({ i }))))
    await stream.close()
    await eventually(() => closedAfter !== undefined, 10_000, 'the close')
    assert.deepEqual(got, Array.from({ length: n }, (_, i) => i), 'every frame, in order')
    assert.equal(closedAfter, n, 'onClose comes after the last frame')
    assert.ok(inBetween !== undefined && inBetween <= FRAMES_PER_TURN, `other work ran after ${inBetween} frames`)
  } finally {
    await close()
  }
})
