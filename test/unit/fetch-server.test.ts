import { test } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import * as varint from 'uint8-varint'
import { FetchService, MAX_SERVED_PER_PEER } from '../../agent/code/fetch.js'
import { FunctionRegistry } from '../../agent/code/registry.js'
import { chunk, encode, FETCH_PROTOCOL, WIRE_VERSION } from '../../protocol/index.js'
import { bareNodes, bigModule, eventually, specFor } from '../helpers.js'

test('a peer is sent at most MAX_SERVED_PER_PEER chunks at once: a request beyond has its stream closed, the others carry on', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'edge-fetch-server-'))
  const { nodes: [server, client], close } = await bareNodes('server', 'client')
  const { module } = bigModule(1_500_000)
  const registry = new FunctionRegistry(dir)
  registry.hold(specFor('big', module), module)
  const cid = chunk(module)[0]?.cid.toString() as string
  const fetcher = new FetchService(server, registry)
  try {
    await Promise.all([server.start(), client.start()])
    await fetcher.start()
    await client.dial(server.getMultiaddrs()[0] ?? assert.fail('no address'))
    const body = encode({ v: WIRE_VERSION, type: 'fetch-chunk', cid })
    // Requests whose answers are not read: the server's sends wait for the client, so each stays being served.
    const streams = []
    for (let i = 0; i <= MAX_SERVED_PER_PEER; i++) {
      const stream = await client.dialProtocol(server.peerId, FETCH_PROTOCOL)
      streams.push(stream)
      // The one beyond the bound may be closed by the server before it can be paused.
      if (stream.status !== 'open') continue
      stream.pause()
      stream.send(Buffer.concat([varint.encode(body.byteLength), body]))
      await eventually(() => stream.readBufferLength > 0 || stream.status !== 'open', 10_000, `an answer to request ${i + 1} begun, or its stream closed`)
    }
    const beyond = streams.pop()
    assert.notEqual(beyond?.status, 'open', 'the request beyond the bound is closed')
    assert.deepEqual(streams.map(s => s.status), streams.map(() => 'open'), 'the others are being served')
    // Read, each brings its whole chunk (1 MiB and the frames around it).
    const received = await Promise.all(streams.map(async (s) => await new Promise<number>((resolve) => {
      let bytes = 0
      s.addEventListener('message', (evt) => {
        bytes += evt.data.byteLength
        if (bytes > 1024 * 1024) resolve(bytes)
      })
      s.resume()
    })))
    assert.equal(received.length, MAX_SERVED_PER_PEER)
    for (const s of streams) await s.close()
  } finally {
    await fetcher.stop()
    await close()
    rmSync(dir, { recursive: true, force: true })
  }
})
