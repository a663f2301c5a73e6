import { test } from 'node:test'
import assert from 'node:assert/strict'
import * as varint from 'uint8-varint'
import { encode, FramedStream, FRAMES_PER_TURN } from '../../protocol/index.js'
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
