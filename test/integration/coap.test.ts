import '../../agent/polyfill.js'
import { describe, test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { createSocket } from 'node:dgram'
import { Agent as CoapAgent, request } from 'coap'
import { generate, parse } from 'coap-packet'
import { up, type Testnet } from '../../testnet/index.js'
import { eventually, example, text } from '../helpers.js'

/**
 * CoAP ingress against agent processes, with a real CoAP client over UDP on loopback: calls as
 * constrained devices make them, block-wise transfers both ways, async calls, errors as CoAP codes,
 * and datagrams that must not reach the CoAP library.
 */
describe('CoAP ingress', () => {
  let net: Testnet
  let port1: number
  let port2: number
  const client = new CoapAgent({ type: 'udp4' })

  async function coap (port: number, method: 'GET' | 'POST', pathname: string, options: { query?: string, payload?: Uint8Array } = {}): Promise<{ code: string, payload: string, options: Array<{ name: string | number, value: unknown }> }> {
    return await new Promise((resolve, reject) => {
      const req = request({ hostname: '127.0.0.1', port, method, pathname, agent: client, ...(options.query !== undefined ? { query: options.query } : {}) })
      // Larger payloads go block-wise (1 KiB blocks), as the client library does when asked.
      if ((options.payload?.byteLength ?? 0) > 1024) req.setOption('Block1', Buffer.of(0x6))
      const timer = setTimeout(() => { reject(new Error(`no CoAP answer to ${method} ${pathname}`)) }, 20_000)
      req.on('response', (res: { code: string, payload: Buffer, options: Array<{ name: string | number, value: unknown }> }) => {
        clearTimeout(timer)
        resolve({ code: res.code, payload: res.payload.toString('utf8'), options: res.options })
      })
      req.on('error', (err: Error) => { clearTimeout(timer); reject(err) })
      req.end(options.payload !== undefined ? Buffer.from(options.payload) : undefined)
    })
  }

  before(async () => {
    net = await up({ peers: 2, agentArgs: () => ['--replicas', '1', '--coap-listen', '127.0.0.1:0'] })
    const port = async (k: number): Promise<number> => Number(new URL(String((await net.client(k).status()).coap)).port)
    port1 = await port(1)
    port2 = await port(2)
    await net.client(1).deploy('primes', example('primes'))
    await net.client(1).deploy('echo', example('echo'))
    await eventually(async () => (await net.client(2).list()).filter(f => f.holders.length > 0).length === 2, 10_000, 'functions known on 2')
  })
  after(async () => {
    client.close()
    await net?.down()
  })

  test('POST /NAME runs the function with the payload as input and answers 2.05 with its output', async () => {
    const r = await coap(port1, 'POST', '/primes', { payload: Buffer.from('{"n":1000}') })
    assert.equal(r.code, '2.05')
    assert.equal(r.payload, '{"n":1000,"primes":168}\n')
    const near = await coap(port2, 'POST', '/primes', { query: 'near', payload: Buffer.from('{"n":100}') })
    assert.equal(near.code, '2.05')
    assert.equal(near.payload, '{"n":100,"primes":25}\n')
    const pinned = await coap(port1, 'POST', '/primes@1', { query: 'local&timeout=5s', payload: Buffer.from('{"n":10}') })
    assert.equal(pinned.payload, '{"n":10,"primes":4}\n')
  })

  test('inputs and outputs beyond one datagram travel block-wise', async () => {
    const big = Buffer.alloc(20_000, 'abcdefghij')
    const r = await coap(port2, 'POST', '/echo', { payload: big })
    assert.equal(r.code, '2.05')
    assert.equal(r.payload.length, big.length)
    assert.equal(r.payload, big.toString('utf8'))
  })

  test('async: 2.01 with an id; GET /requests/ID answers 2.05 with the output once done', async () => {
    const accepted = await coap(port1, 'POST', '/primes', { query: 'async', payload: Buffer.from('{"n":1000}') })
    assert.equal(accepted.code, '2.01')
    const id = accepted.payload
    assert.match(id, /^[0-9a-f-]{36}$/)
    const done = await eventually(async () => {
      const r = await coap(port1, 'GET', `/requests/${id}`)
      return r.code === '2.05' ? r : undefined
    }, 10_000, 'the async call to finish')
    assert.equal(done.payload, '{"n":1000,"primes":168}\n')
    // The HTTP API sees the same call.
    assert.equal((await net.client(1).poll(id)).state, 'done')
  })

  test('errors are CoAP codes with a one-line reason', async () => {
    const unknown = await coap(port1, 'POST', '/nosuch')
    assert.equal(unknown.code, '4.04')
    assert.match(unknown.payload, /nosuch/)
    const policy = await coap(port1, 'POST', '/primes', { query: 'policy=fastest' })
    assert.equal(policy.code, '4.00')
    assert.match(policy.payload, /^unknown policy 'fastest'/)
    const method = await coap(port1, 'GET', '/primes')
    assert.equal(method.code, '4.05')
    const resource = await coap(port1, 'POST', '/a/b/c')
    assert.equal(resource.code, '4.04')
    const request = await coap(port1, 'GET', '/requests/00000000-0000-4000-8000-000000000000')
    assert.equal(request.code, '4.04')
  })

  test('junk datagrams and a block-wise request claiming too much are dropped; the agent carries on', async () => {
    const sock = createSocket('udp4')
    const reply = new Promise<Buffer>((resolve) => { sock.once('message', (msg) => { resolve(msg) }) })
    const send = async (msg: Buffer): Promise<void> => { await new Promise<void>((resolve) => { sock.send(msg, port1, '127.0.0.1', () => { resolve() }) }) }
    await send(Buffer.from('not coap at all'))
    // Block1 num 100 000 of 1 KiB blocks, "more" clear: the library would allocate ~100 MB for it.
    const num = 100_000
    const block1 = Buffer.alloc(3)
    block1.writeUIntBE((num << 4) | 6, 0, 3)
    await send(generate({ messageId: 7, token: Buffer.from('tok'), code: 'POST', confirmable: true, options: [{ name: 'Uri-Path', value: Buffer.from('echo') }, { name: 'Block1', value: block1 }], payload: Buffer.from('x') }))
    const answer = parse(await reply)
    sock.close()
    assert.equal(answer.code, '4.13')
    assert.equal(answer.messageId, 7)
    const r = await coap(port1, 'POST', '/primes', { payload: Buffer.from('{"n":10}') })
    assert.equal(text(Buffer.from(r.payload)), '{"n":10,"primes":4}\n')
  })

  test('random and mutated CoAP messages are answered or dropped; the agent carries on (fuzzed, seeded)', async () => {
    const { default: fc } = await import('fast-check')
    const sock = createSocket('udp4')
    let replies = 0
    sock.on('message', () => { replies++ })
    const send = async (msg: Buffer): Promise<void> => { await new Promise<void>((resolve) => { sock.send(msg, port1, '127.0.0.1', () => { resolve() }) }) }
    const option = fc.oneof(
      fc.record({ name: fc.constantFrom('Uri-Path', 'Uri-Query', 'Content-Format', 'Accept', 'Block1', 'Block2', 'Size1', 'Observe', 'ETag', 'If-Match'), value: fc.uint8Array({ maxLength: 12 }).map(b => Buffer.from(b)) }),
      fc.record({ name: fc.constantFrom('Uri-Path'), value: fc.constantFrom('echo', 'primes', 'echo@1', 'nope', '', '..', 'echo@x').map(v => Buffer.from(v)) }),
      fc.record({ name: fc.integer({ min: 1, max: 2000 }).map(String), value: fc.uint8Array({ maxLength: 8 }).map(b => Buffer.from(b)) })
    )
    const message = fc.record({
      messageId: fc.integer({ min: 0, max: 65535 }),
      token: fc.uint8Array({ maxLength: 8 }).map(b => Buffer.from(b)),
      code: fc.constantFrom('GET', 'POST', 'PUT', 'DELETE', '0.00', '2.05', '4.04', '7.31'),
      confirmable: fc.boolean(),
      reset: fc.boolean(),
      options: fc.array(option, { maxLength: 6 }),
      payload: fc.uint8Array({ maxLength: 300 }).map(b => Buffer.from(b))
    })
    const encoded = message.map((m) => { try { return generate(m as never) } catch { return Buffer.from('x') } })
    const mutated = fc.tuple(encoded, fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 6 })).map(([b, edits]) => {
      const out = Buffer.from(b)
      for (const [at, byte] of edits) out[at % out.length] = byte
      return out
    })
    try {
      await fc.assert(fc.asyncProperty(fc.oneof(encoded, mutated, fc.uint8Array({ minLength: 1, maxLength: 64 }).map(b => Buffer.from(b))), async (datagram) => {
        await send(datagram)
        return true
      }), { seed: 20261201, numRuns: 800 })
      // Still serving, on both front doors.
      const r = await coap(port1, 'POST', '/primes', { payload: Buffer.from('{"n":10}') })
      assert.equal(r.payload, '{"n":10,"primes":4}\n')
      assert.equal((await net.client(1).status()).peerId, net.agent(1).peerId)
      assert.ok(replies > 0, 'some of it was answered')
    } finally {
      sock.close()
    }
  })
})
