import { test } from 'node:test'
import assert from 'node:assert/strict'
import { InvokeServer, MAX_CALLS_PER_PEER, MAX_INVALID_FRAMES } from '../../agent/calls/invoke-server.js'
import { FramedStream, INVOKE_PROTOCOL, MAX_INVOKE_FRAME_BYTES, WIRE_VERSION } from '../../protocol/index.js'
import { bareNodes, eventually } from '../helpers.js'
import type { EdgeNode } from '../../agent/swarm/node.js'

interface Answer { id: number, type: string, code?: string, message?: string }

/** A raw /edge/invoke/1 stream from `from` to `to`: what it receives, and whether it closed. */
async function rawStream (from: EdgeNode, to: EdgeNode): Promise<{ framed: FramedStream, answers: Answer[], closed: () => boolean }> {
  const stream = await from.dialProtocol(to.peerId, INVOKE_PROTOCOL)
  const answers: Answer[] = []
  let closed = false
  const framed = new FramedStream(stream, { maxFrameBytes: MAX_INVOKE_FRAME_BYTES, onMessage: (m) => { answers.push(m as Answer) }, onClose: () => { closed = true } })
  return { framed, answers, closed: () => closed }
}

const request = (id: number): Record<string, unknown> => ({ v: WIRE_VERSION, type: 'invoke', id, fn: { name: 'fn', version: 1, sha256: 'a'.repeat(64) }, input: new Uint8Array(0), deadlineMs: 60_000, holders: [] })

test('a peer\'s calls in flight are bounded, and a stream that keeps sending invalid requests is closed', async () => {
  const { nodes: [server, client], close } = await bareNodes('server', 'client')
  // Calls that run until their caller or the server gives up.
  let started = 0
  const invoke = new InvokeServer(server, async (_request, _from, signal) => {
    started++
    return await new Promise((_resolve, reject) => { signal.addEventListener('abort', () => { reject(signal.reason as Error) }) })
  })
  try {
    await Promise.all([server.start(), client.start()])
    await invoke.start()
    await client.dial(server.getMultiaddrs()[0] ?? assert.fail('no address'))
    const calls = await rawStream(client, server)
    for (let id = 1; id <= MAX_CALLS_PER_PEER + 10; id++) await calls.framed.write(request(id))
    await eventually(() => calls.answers.length === 10, 10_000, 'the calls past the bound answered')
    assert.equal(started, MAX_CALLS_PER_PEER)
    assert.deepEqual(calls.answers.map(a => a.id), Array.from({ length: 10 }, (_, i) => MAX_CALLS_PER_PEER + 1 + i))
    assert.ok(calls.answers.every(a => a.code === 'BUSY' && a.message === `${MAX_CALLS_PER_PEER} calls of yours are running or queued here already`), JSON.stringify(calls.answers[0]))

    const junk = await rawStream(client, server)
    for (let id = 1; id <= 100; id++) await junk.framed.write({ v: WIRE_VERSION, type: 'invoke', id }).catch(() => {})
    await eventually(() => junk.closed(), 10_000, 'the stream to close')
    assert.equal(junk.answers.length, MAX_INVALID_FRAMES, 'answered up to the bound, then closed')
    assert.ok(junk.answers.every(a => a.code === 'BAD_REQUEST'))
    assert.equal(calls.closed(), false, 'the peer\'s other stream carries on')
  } finally {
    await invoke.stop(0)
    await close()
  }
})
