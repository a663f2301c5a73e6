import '../../agent/polyfill.js'
import { describe, test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtempSync, rmSync } from 'node:fs'
import { createHash } from 'node:crypto'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { up, type Testnet } from '../../testnet/index.js'
import { runAgentCommand } from '../../testnet/process.js'
import { peerIdFromString } from '@libp2p/peer-id'
import type { AgentClient } from '../../cli/client.js'
import { bareMember, eventually, example, metricValue, specFor, text } from '../helpers.js'

/**
 * Trust boundaries, tried as an attacker would: a member that holds the swarm key but whose key no
 * agent trusts, built from the project's own libp2p stack, against three real agent processes.
 */
describe('a member whose key nobody trusts', () => {
  let net: Testnet
  let clients: AgentClient[]

  before(async () => {
    net = await up({ peers: 3, agentArgs: () => ['--replicas', '1'] })
    clients = [1, 2, 3].map(k => net.client(k))
    await clients[0]?.deploy('echo', example('echo'))
    for (const c of clients) await eventually(async () => (await c.list()).some(f => f.name === 'echo'), 10_000, 'echo known everywhere')
  })
  after(async () => { await net?.down() })

  test('cannot change what a name resolves to, by announcing or advertising newer versions', async () => {
    const { ADVERTS_TOPIC, FUNCTIONS_TOPIC, WIRE_VERSION, chunk, encode, signRecord } = await import('../../protocol/index.js')
    const { deployAnnouncement } = await import('../../agent/swarm/announcements.js')
    const { generateKeyPair } = await import('@libp2p/crypto/keys')
    const dir = mkdtempSync(join(tmpdir(), 'edge-untrusted-member-'))
    const key = await generateKeyPair('Ed25519')
    const rogue = await bareMember(net, dir, { privateKey: key })
    const id = rogue.peerId.toString()
    const code = example('primes')
    const sha256 = createHash('sha256').update(code).digest('hex')
    // v2: a claim with no record at all; v3: a well-formed manifest, signed by the member's own key;
    // v4: only in its adverts, for code that does not exist.
    const v2 = specFor('echo', code, { version: 2 })
    const v3 = specFor('echo', code, { version: 3 })
    const record = await signRecord({
      v: WIRE_VERSION, type: 'manifest', name: 'echo', version: 3, runtime: 'wasm', entry: '_start', limits: { memoryBytes: v3.memoryBytes, timeoutMs: v3.timeoutMs, concurrency: 0 },
      labels: {}, env: {}, chunks: chunk(code).map(c => c.cid.toString()), size: code.byteLength, sha256, deployedAt: v3.deployedAt
    }, key)
    let seq = 0
    const misbehave = async (): Promise<void> => {
      const at = Date.now()
      const { record: _record, code: _code, ...unsigned } = deployAnnouncement(v2, id, record, code, at)
      await rogue.services.pubsub.publish(FUNCTIONS_TOPIC, encode(unsigned)).catch(() => {})
      await rogue.services.pubsub.publish(FUNCTIONS_TOPIC, encode(deployAnnouncement(v3, id, record, code, at))).catch(() => {})
      await rogue.services.pubsub.publish(ADVERTS_TOPIC, encode({
        v: WIRE_VERSION, type: 'advert', peerId: id, addrs: rogue.getMultiaddrs().map(String), arch: process.arch, platform: process.platform, cpus: 64, memTotal: 2 ** 34, memFree: 2 ** 34,
        runtimes: [{ kind: 'wasm', slots: 64, busy: 0 }], queue: 0, labels: {}, warm: [],
        functions: [{ name: 'echo', version: 4, sha256: 'f'.repeat(64) }, { name: 'echo', version: 3, sha256 }], seq: seq++, sentAt: at
      })).catch(() => {})
    }
    let timer: NodeJS.Timeout | undefined
    try {
      await rogue.start()
      rogue.services.pubsub.subscribe(FUNCTIONS_TOPIC)
      rogue.services.pubsub.subscribe(ADVERTS_TOPIC)
      timer = setInterval(() => { void misbehave() }, 500)
      // Every agent has heard both announcements and an advert (the member is in its peer table).
      for (const k of [1, 2, 3]) {
        await eventually(async () => await metricValue(net.agent(k).api, 'edge_announcements_ignored_total{reason="unsigned"}') >= 1 &&
          await metricValue(net.agent(k).api, 'edge_announcements_ignored_total{reason="untrusted"}') >= 1 &&
          (await net.client(k).peers()).some(p => p.peerId === id), 15_000, `agent ${k} heard the member`)
      }
      for (const [i, c] of clients.entries()) {
        const res = await c.invoke('echo', { input: Buffer.from(`still v1 on ${i + 1}`) })
        assert.equal(text(res.outputBytes), `still v1 on ${i + 1}`)
        assert.equal(res.function.version, 1)
        assert.notEqual(res.ranOn, id)
        assert.deepEqual((await c.list()).filter(f => f.name === 'echo').map(f => f.version), [1])
      }
      await assert.rejects(clients[1]?.invoke('echo@3') ?? Promise.reject(new Error('no client')), (err: Error & { status?: number }) => {
        assert.equal(err.status, 403)
        assert.match(err.message, new RegExp(`'echo' v3 is signed by a key this agent does not trust \\(${id}\\)`))
        return true
      })
    } finally {
      clearInterval(timer)
      await rogue.stop()
      rmSync(dir, { recursive: true, force: true })
    }
  })

  test('gets no calls however free it says it is, and is refused the calls and code it asks for', async () => {
    const { ADVERTS_TOPIC, INVOKE_PROTOCOL, WIRE_VERSION, FramedStream, MAX_INVOKE_FRAME_BYTES, encode } = await import('../../protocol/index.js')
    const { InvokeClient } = await import('../../agent/calls/invoke-client.js')
    const { FetchService } = await import('../../agent/code/fetch.js')
    const { FunctionRegistry } = await import('../../agent/code/registry.js')
    const dir = mkdtempSync(join(tmpdir(), 'edge-untrusted-member-'))
    const rogue = await bareMember(net, dir)
    const id = rogue.peerId.toString()
    const primes = await clients[0]?.deploy('primes', example('primes'))
    assert.ok(primes)
    let received = 0
    let timer: NodeJS.Timeout | undefined
    try {
      await rogue.start()
      // It takes any call and answers it with a forged result.
      await rogue.handle(INVOKE_PROTOCOL, (stream) => {
        const framed: InstanceType<typeof FramedStream> = new FramedStream(stream, {
          maxFrameBytes: MAX_INVOKE_FRAME_BYTES,
          onMessage: (m) => {
            received++
            void framed.write({ v: WIRE_VERSION, type: 'result', id: (m as { id: number }).id, output: Buffer.from('FORGED'), warm: true, timings: { queueMs: 0, fetchMs: 0, runMs: 0 } }).catch(() => {})
          },
          onClose: () => {}
        })
      })
      rogue.services.pubsub.subscribe(ADVERTS_TOPIC)
      let seq = 0
      // 4096 free slots, and every function of the swarm held and warm.
      const advertise = async (): Promise<void> => {
        const held = (await clients[0]?.list() ?? []).map(f => ({ name: f.name, version: f.version, sha256: f.sha256 }))
        await rogue.services.pubsub.publish(ADVERTS_TOPIC, encode({
          v: WIRE_VERSION, type: 'advert', peerId: id, addrs: rogue.getMultiaddrs().map(String), arch: process.arch, platform: process.platform, cpus: 64, memTotal: 2 ** 34, memFree: 2 ** 34,
          runtimes: [{ kind: 'wasm', slots: 4096, busy: 0 }], queue: 0, labels: {}, warm: held.map(f => f.sha256), functions: held, seq: seq++, sentAt: Date.now()
        })).catch(() => {})
      }
      timer = setInterval(() => { void advertise() }, 500)
      for (const c of clients) await eventually(async () => (await c.peers()).find(p => p.peerId === id)?.runtimes[0]?.slots === 4096, 15_000, 'the member\'s advert heard')
      // Calls spill over from a busy agent under every policy: none reaches the member.
      for (const policy of ['local-first', 'near', 'least-loaded', 'p2c', 'weighted', 'warm-affinity']) {
        // Two local slots, six in the swarm: eight at once spill over, and a call that finds
        // every slot busy (429, as the 2-core machine allows) is sent again, as a client would.
        const outputs = await Promise.all(Array.from({ length: 8 }, async () => {
          for (let attempt = 0; ; attempt++) {
            try {
              return text((await (clients[1] as AgentClient).invoke('primes', { params: { n: 20000 }, policy })).outputBytes)
            } catch (err) {
              if ((err as { status?: number }).status !== 429 || attempt === 20) throw err
              await new Promise(resolve => setTimeout(resolve, 100))
            }
          }
        }))
        assert.deepEqual([...new Set(outputs)], ['{"n":20000,"primes":2262}\n'], policy)
      }
      assert.equal(received, 0, 'calls went to the member')
      await assert.rejects((clients[1] as AgentClient).invoke('primes', { peer: id }), (err: Error & { status?: number }) => {
        assert.match(err.message, new RegExp(id))
        return err.status !== undefined && err.status >= 400
      })
      // Its own calls and fetches are refused.
      const client = new InvokeClient(rogue)
      await assert.rejects(client.call(net.agent(1).peerId, { fn: { name: 'primes', version: 1, sha256: primes.function.sha256 }, input: Buffer.from('{"n":10}'), deadlineMs: 5000, holders: [], queue: false }, { signal: AbortSignal.timeout(10_000) }), {
        name: 'UntrustedManifestError', message: `this agent takes calls only from peers it trusts, and not from ${id}`
      })
      await client.stop()
      const manifest = await (clients[0] as AgentClient).manifest('primes')
      const fetcher = new FetchService(rogue, new FunctionRegistry(join(dir, 'registry')))
      await assert.rejects(fetcher.fetchChunkFrom(net.agent(1).peerId, manifest.chunks?.[0] ?? '', { signal: AbortSignal.timeout(10_000) }))
    } finally {
      clearInterval(timer)
      await rogue.stop()
      rmSync(dir, { recursive: true, force: true })
    }
  })
})

describe('a trusted member that floods an agent', () => {
  let net: Testnet
  let key: Awaited<ReturnType<typeof import('@libp2p/crypto/keys').generateKeyPair>>

  before(async () => {
    const { generateKeyPair } = await import('@libp2p/crypto/keys')
    const { peerIdFromPrivateKey } = await import('@libp2p/peer-id')
    key = await generateKeyPair('Ed25519')
    net = await up({ peers: 2 })
    // Agent 1 trusts the member (a device of the owner's, broken or taken over).
    await runAgentCommand(['trust', 'add', peerIdFromPrivateKey(key).toString(), '--data-dir', net.agent(1).dataDir])
    await net.stop(1)
    await net.start(1)
    await net.waitForMesh()
    await net.client(1).deploy('echo', example('echo'))
  })
  after(async () => { await net?.down() })

  test('gets every call for made-up names answered at bounded cost, and the agent serves its own API and real calls meanwhile', async () => {
    const { FramedStream, INVOKE_PROTOCOL, MAX_INVOKE_FRAME_BYTES, WIRE_VERSION } = await import('../../protocol/index.js')
    const dir = mkdtempSync(join(tmpdir(), 'edge-flood-'))
    const member = await bareMember(net, dir, { privateKey: key, trusts: () => true })
    try {
      await member.start()
      await eventually(() => member.getConnections().some(c => c.remotePeer.toString() === net.agent(1).peerId), 10_000, 'connected to agent 1')
      const answers: Array<{ code?: string, message?: string }> = []
      const stream = await member.dialProtocol(peerIdFromString(net.agent(1).peerId), INVOKE_PROTOCOL)
      const framed = new FramedStream(stream, { maxFrameBytes: MAX_INVOKE_FRAME_BYTES, onMessage: (m) => { answers.push(m as { code?: string }) } })
      const n = 2000
      for (let id = 1; id <= n; id++) {
        await framed.write({ v: WIRE_VERSION, type: 'invoke', id, fn: { name: `made-up-${id}`, version: 1, sha256: createHash('sha256').update(String(id)).digest('hex') }, input: new Uint8Array(0), deadlineMs: 30_000, holders: [] })
      }
      // Meanwhile the agent answers its own API and runs a real call.
      assert.equal((await net.client(1).status()).peerId, net.agent(1).peerId)
      assert.equal(text((await net.client(1).invoke('echo', { input: Buffer.from('meanwhile') })).outputBytes), 'meanwhile')
      await eventually(() => answers.length === n, 30_000, `all ${n} calls answered`)
      const codes = new Map<string, number>()
      for (const a of answers) codes.set(a.code ?? 'none', (codes.get(a.code ?? 'none') ?? 0) + 1)
      assert.deepEqual([...codes.keys()].filter(c => !['UNTRUSTED', 'NOT_FOUND', 'BUSY'].includes(c)), [], JSON.stringify([...codes]))
      assert.ok(answers.some(a => a.code === 'BUSY' && /look-ups are in progress|look-ups a second per peer|calls of yours are running/.test(a.message ?? '')), 'a bound was reached')
      await framed.close()
    } finally {
      await member.stop()
      rmSync(dir, { recursive: true, force: true })
    }
  })
})


describe('trust changes while the agent runs', () => {
  let net: Testnet
  let echo: { version: number, sha256: string }

  before(async () => {
    net = await up({ peers: 2 })
    echo = (await net.client(1).deploy('echo', example('echo'))).function
  })
  after(async () => { await net?.down() })

  test('apply without a restart: a key trusted with trust add is served at once, and one removed is refused on its open stream', async () => {
    const { FramedStream, INVOKE_PROTOCOL, MAX_INVOKE_FRAME_BYTES, WIRE_VERSION } = await import('../../protocol/index.js')
    const { generateKeyPair } = await import('@libp2p/crypto/keys')
    const { peerIdFromPrivateKey } = await import('@libp2p/peer-id')
    const key = await generateKeyPair('Ed25519')
    const memberId = peerIdFromPrivateKey(key).toString()
    const dir = mkdtempSync(join(tmpdir(), 'edge-live-trust-'))
    const member = await bareMember(net, dir, { privateKey: key, trusts: () => true })
    /** A stream to agent 1 whose calls of echo answer with their first frame. */
    const open = async (): Promise<{ call: (id: number) => Promise<{ type?: string, code?: string, output?: Uint8Array }>, close: () => Promise<void> }> => {
      const stream = await member.dialProtocol(peerIdFromString(net.agent(1).peerId), INVOKE_PROTOCOL)
      const waiting = new Map<number, (m: { type?: string, code?: string }) => void>()
      const framed = new FramedStream(stream, {
        maxFrameBytes: MAX_INVOKE_FRAME_BYTES,
        onMessage: (m) => { const a = m as { id: number, type?: string, code?: string }; waiting.get(a.id)?.(a); waiting.delete(a.id) },
        onClose: () => { for (const w of waiting.values()) w({ code: 'CLOSED' }) }
      })
      return {
        call: async (id) => await new Promise((resolve) => {
          waiting.set(id, resolve)
          framed.write({ v: WIRE_VERSION, type: 'invoke', id, fn: { name: 'echo', version: echo.version, sha256: echo.sha256 }, input: Buffer.from('hi'), deadlineMs: 10_000, holders: [] }).catch(() => { resolve({ code: 'CLOSED' }) })
        }),
        close: async () => { await framed.close() }
      }
    }
    try {
      await member.start()
      await eventually(() => member.getConnections().some(c => c.remotePeer.toString() === net.agent(1).peerId), 10_000, 'connected to agent 1')
      const before = await open()
      assert.equal((await before.call(1)).code, 'UNTRUSTED')
      await runAgentCommand(['trust', 'add', memberId, '--data-dir', net.agent(1).dataDir])
      let served: { type?: string, output?: Uint8Array } = {}
      await eventually(async () => {
        const s = await open()
        served = await s.call(1)
        await s.close().catch(() => {})
        return served.type === 'result'
      }, 10_000, 'the member served after trust add, with no restart')
      assert.equal(text(served.output ?? new Uint8Array(0)), 'hi')
      const kept = await open()
      assert.equal((await kept.call(1)).type, 'result')
      await runAgentCommand(['trust', 'remove', memberId, '--data-dir', net.agent(1).dataDir])
      let n = 2
      await eventually(async () => (await kept.call(n++)).code === 'UNTRUSTED', 10_000, 'the open stream refused after trust remove')
    } finally {
      await member.stop()
      rmSync(dir, { recursive: true, force: true })
    }
  })
})
