import '../../agent/polyfill.js'
import { describe, test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtempSync, rmSync } from 'node:fs'
import { createHash } from 'node:crypto'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { up, waitForAgent, type Testnet } from '../../testnet/index.js'
import { runAgentCommand, spawnAgent, stopAgent, sleep } from '../../testnet/process.js'
import { AgentClient, ApiError } from '../../cli/client.js'
import { bareMember, bigModule, EDGE_BIN, example, fixture, eventually, metricValue, runNode, text, type Run } from '../helpers.js'

/**
 * A real testnet: three agent processes on 127.0.0.1 talking libp2p over TCP, driven through
 * their HTTP APIs exactly as the CLI does. Agent 2 has a single WASM slot, to saturate it. Code is
 * not replicated here (see dht.test.ts): who holds what follows from the calls alone.
 */
describe('a swarm of three agents', () => {
  let net: Testnet
  let a1: AgentClient, a2: AgentClient, a3: AgentClient

  before(async () => {
    // One copy of each function (no replication): these tests place calls by who holds the code.
    net = await up({ peers: 3, agentArgs: (k) => ['--replicas', '1', '--wasm-slots', k === 2 ? '1' : '2'] })
    ;[a1, a2, a3] = [net.client(1), net.client(2), net.client(3)]
  })
  after(async () => { await net?.down() })

  /** An agent process outside the testnet, bootstrapped through agent 1; `initArgs` choose its swarm key. */
  async function extraAgent (dir: string, initArgs: string[], startArgs: string[] = []): Promise<{ pid: number, dataDir: string, info: { api: string, peerId: string } }> {
    const dataDir = join(dir, 'agent')
    await runAgentCommand(['init', '--data-dir', dataDir, ...initArgs, '--quiet'])
    const logFile = join(dir, 'log')
    const pid = spawnAgent(['--data-dir', dataDir, '--listen', '/ip4/127.0.0.1/tcp/0', '--api-port', '0', '--no-mdns', ...startArgs, '--bootstrap', net.agent(1).addrs[0] ?? ''], logFile)
    try {
      return { pid, dataDir, info: await waitForAgent(dataDir, pid, logFile, 15_000) }
    } catch (err) {
      await stopAgent(pid, dataDir)
      throw err
    }
  }

  test('every agent sees the others with their capacity, and itself in status', async () => {
    const peers = await a1.peers()
    assert.deepEqual(peers.map(p => p.peerId).sort(), [net.agent(2).peerId, net.agent(3).peerId].sort())
    const two = peers.find(p => p.peerId === net.agent(2).peerId)
    assert.equal(two?.runtimes[0]?.kind, 'wasm')
    assert.equal(two?.runtimes[0]?.slots, 1)
    assert.equal(two?.arch, process.arch)
    assert.ok((two?.advertAgeMs ?? Infinity) < 3500)
    await eventually(async () => (await a1.peers()).every(p => p.rttMs !== undefined), 10_000, 'RTTs')
    const status = await a1.status()
    assert.equal(status.peerId, net.agent(1).peerId)
    assert.equal(status.peers, 2)
  })

  test('deploy then invoke runs locally on the deploying agent', async () => {
    const dep = await a1.deploy('echo', example('echo'), { memory: '32MiB', timeout: '2s' })
    assert.equal(dep.function.version, 1)
    assert.equal(dep.shared, true, 'a peer has the signed manifest when the deploy returns')
    assert.equal(dep.function.memoryBytes, 32 * 1024 * 1024)
    const res = await a1.invoke('echo', { params: { hello: 'edge' } })
    assert.equal(text(res.outputBytes), '{"hello":"edge"}')
    assert.equal(res.ranOn, net.agent(1).peerId)
    assert.equal(res.local, true)
    assert.equal(res.timings.fetchMs, 0)
    const metrics = await (await fetch(`${net.agent(1).api}/metrics`)).text()
    assert.match(metrics, /^edge_calls_total\{function="echo",placement="local",outcome="ok"\} [1-9]/m)
    assert.match(metrics, /^edge_peers 2$/m)
  })

  test('the deploy publishes a signed manifest to the DHT, which any agent reads with its signer', async () => {
    const m = await eventually(async () => await a3.manifest('echo').catch(() => undefined), 10_000, 'manifest from the DHT')
    assert.equal(m.source, 'dht')
    assert.equal(m.version, 1)
    assert.equal(m.signer, net.agent(1).peerId)
    assert.equal(m.trusted, true, 'testnet agents trust each other')
    assert.equal(m.limits?.memoryBytes, 32 * 1024 * 1024)
    assert.equal(m.chunks?.length, 1)
    assert.equal((await a1.manifest('echo')).trusted, true)
  })

  test('every agent lists the deployed function with its holder', async () => {
    for (const c of [a2, a3]) {
      const fn = await eventually(async () => (await c.list()).find(f => f.name === 'echo'), 10_000, 'echo in list')
      assert.deepEqual(fn.holders, [net.agent(1).peerId])
    }
  })

  test('--near from another agent runs on the nearest holder', async () => {
    await a1.deploy('primes', example('primes'))
    await eventually(async () => (await a3.list()).some(f => f.name === 'primes' && f.holders.length > 0), 10_000, 'primes known on 3')
    const res = await a3.invoke('primes', { params: { n: 10000 }, policy: 'near' })
    assert.equal(text(res.outputBytes), '{"n":10000,"primes":1229}\n')
    assert.equal(res.ranOn, net.agent(1).peerId, 'the only holder is the nearest place that has it')
    assert.equal(res.local, false)
    assert.equal(res.policy, 'near')
    assert.ok(res.timings.networkMs >= 0)
  })

  test('local-first fetches the code from a holder and runs here when a slot is free', async () => {
    const res = await a3.invoke('primes', { params: { n: 100 } })
    assert.equal(text(res.outputBytes), '{"n":100,"primes":25}\n')
    assert.equal(res.ranOn, net.agent(3).peerId)
    assert.ok(res.timings.fetchMs > 0, 'first call fetched the code')
    const again = await a3.invoke('primes', { params: { n: 100 } })
    assert.equal(again.timings.fetchMs, 0)
    assert.equal(again.warm, true)
  })

  test('warm-affinity and least-loaded send a call from an agent without the code to a warm holder', async () => {
    const holders = new Set([net.agent(1).peerId, net.agent(3).peerId])
    await eventually(async () => (await a2.list()).find(f => f.name === 'primes')?.holders.length === 2, 10_000, 'agent 2 to see both holders')
    const warm = await a2.invoke('primes', { params: { n: 10 }, policy: 'warm-affinity', explain: true })
    assert.equal(text(warm.outputBytes), '{"n":10,"primes":4}\n')
    assert.ok(holders.has(warm.ranOn), 'ran where the function was warm')
    assert.equal(warm.warm, true)
    assert.equal(warm.policy, 'warm-affinity')
    assert.match(warm.ranking?.candidates[0]?.reason ?? '', /^warm here/)
    assert.match(warm.ranking?.candidates.find(c => c.local)?.reason ?? '', /cold/)
    const idle = await a2.invoke('primes', { params: { n: 10 }, policy: 'least-loaded', explain: true })
    // Which idle place comes first depends on adverts in flight (the holder that just ran a call
    // looks half busy until its next advert); the call runs on the first, an idle one.
    assert.equal(idle.ranOn, idle.ranking?.candidates[0]?.peerId)
    assert.match(idle.ranking?.candidates[0]?.reason ?? '', /^load 0%/)
    await assert.rejects(a2.invoke('primes', { policy: 'fastest' }), /unknown policy 'fastest': use one of local-first, near, least-loaded, p2c, warm-affinity, weighted, local, peer/)
  })

  test('a saturated agent offloads to a peer', async () => {
    await a2.deploy('sleep', fixture('sleep'), { timeout: '10s' })
    const blocker = a2.invoke('sleep', { input: Buffer.from('1500'), policy: 'local' })
    await eventually(async () => (await a2.status()).runtimes[0]?.busy === 1, 5000, 'agent 2 busy')
    // The scheduler knows nothing yet of how long 'sleep' runs: a call that has run past its
    // estimate is expected to need at least half as long again. Once the blocker has run for half
    // a second, the local queue plainly loses to a free peer (fetch and all); right after it
    // started, the two were within a loaded machine's RTT of each other, and the test was flaky.
    await sleep(500)
    const res = await a2.invoke('sleep', { input: Buffer.from('10') })
    assert.equal(text(res.outputBytes), 'slept 10\n')
    assert.notEqual(res.ranOn, net.agent(2).peerId)
    assert.equal(res.local, false)
    assert.equal(text((await blocker).outputBytes), 'slept 1500\n')
  })

  test('unknown function: 404 with a clear message', async () => {
    await assert.rejects(a2.invoke('no-such-fn'), (err: ApiError) => {
      assert.equal(err.status, 404)
      assert.match(err.message, /unknown function 'no-such-fn'/)
      return true
    })
  })

  test('a malformed module is refused at deploy and nothing is stored', async () => {
    await assert.rejects(a1.deploy('broken', Buffer.from('this is not wasm')), (err: ApiError) => {
      assert.equal(err.status, 422)
      assert.match(err.message, /not a WebAssembly module/)
      return true
    })
    assert.equal((await a1.list()).some(f => f.name === 'broken'), false)
  })

  test('a failing function reports its stderr, and is not retried elsewhere', async () => {
    await a1.deploy('fail', fixture('fail'))
    await assert.rejects(a1.invoke('fail'), (err: ApiError) => {
      assert.equal(err.status, 500)
      assert.match(err.message, /exited with code 3/)
      assert.equal(err.stderr, 'bad input: nothing to do\n')
      assert.equal(err.attempts?.length, 1)
      return true
    })
  })

  test('edge logs shows the calls that ran on an agent, whoever asked, with what they printed', async () => {
    await assert.rejects(a3.invoke('fail', { peer: net.agent(1).peerId }))
    await a3.invoke('primes', { params: { n: 10 }, peer: net.agent(1).peerId })
    const fails = await a1.logs({ name: 'fail' })
    assert.equal(fails.length, 2, 'the call from the previous test, and the one agent 3 sent')
    assert.deepEqual(fails.map(e => e.from), ['local', net.agent(3).peerId])
    for (const e of fails) {
      assert.equal(e.outcome, 'error')
      assert.match(e.error ?? '', /exited with code 3/)
      assert.equal(e.stderr, 'bad input: nothing to do\n')
    }
    const last = (await a1.logs({ limit: 1 }))[0]
    assert.equal(last?.name, 'primes')
    assert.equal(last?.outcome, 'ok')
    const cli = await runNode(EDGE_BIN, ['--agent', net.agent(1).api, 'logs', 'fail', '-n', '1'])
    assert.equal(cli.code, 0, cli.stderr)
    assert.match(cli.stdout, /^\S+Z {2}fail@1 {2}failed: function fail exited with code 3 .* for peer \S+\n {4}bad input: nothing to do\n$/)
    assert.equal((await a2.logs({ name: 'fail' })).length, 0, 'nothing of it ran on agent 2')
  })

  test('redeploying bumps the version everywhere; delete removes it across the swarm', async () => {
    await a1.deploy('tmp', example('echo'))
    const v2 = await a1.deploy('tmp', example('primes'))
    assert.equal(v2.function.version, 2)
    await eventually(async () => (await a3.list()).find(f => f.name === 'tmp' && f.version === 2), 10_000, 'v2 on agent 3')
    const ran = await a3.invoke('tmp', { params: { n: 10 } })
    assert.equal(text(ran.outputBytes), '{"n":10,"primes":4}\n')
    await a2.delete('tmp')
    for (const c of [a1, a2, a3]) {
      await eventually(async () => !(await c.list()).some(f => f.name === 'tmp'), 10_000, 'tmp gone')
    }
    await assert.rejects(a3.invoke('tmp'), { status: 404 })
  })

  test('malformed and oversize gossip is dropped, and the agents carry on', async () => {
    const { ADVERTS_TOPIC, FUNCTIONS_TOPIC, encode } = await import('../../protocol/index.js')
    const dir = mkdtempSync(join(tmpdir(), 'edge-garbage-'))
    const node = await bareMember(net, dir)
    try {
      await node.start()
      node.services.pubsub.subscribe(ADVERTS_TOPIC)
      await eventually(() => node.services.pubsub.getSubscribers(ADVERTS_TOPIC).length > 0, 10_000, 'subscribers')
      const before = (await a1.status()).droppedMessages
      const garbage = [
        Uint8Array.from([0xff, 0x00, 0x13]),
        encode({ v: 99, type: 'advert' }),
        encode({ v: 1, type: 'advert', peerId: net.agent(2).peerId }),
        encode({ v: 1, type: 'delete', name: 'echo', version: 99, by: net.agent(2).peerId, at: 1 }),
        new Uint8Array(80 * 1024)
      ]
      // Publish rounds until agent 1 has seen some: the first may go out before the gossip stream is up.
      await eventually(async () => {
        for (const data of garbage) {
          await node.services.pubsub.publish(ADVERTS_TOPIC, data).catch(() => {})
          await node.services.pubsub.publish(FUNCTIONS_TOPIC, data).catch(() => {})
        }
        await sleep(300)
        return (await a1.status()).droppedMessages >= before + 4
      }, 15_000, 'garbage dropped')
      // The forged delete was signed by the wrong peer: echo is still there and still runs.
      assert.equal(text((await a1.invoke('echo', { input: Buffer.from('still here') })).outputBytes), 'still here')
      for (const c of [a1, a2, a3]) assert.ok((await c.status()).peerId)
    } finally {
      await node.stop()
      rmSync(dir, { recursive: true, force: true })
    }
  })

  test('functions signed by an untrusted deployer are refused, with the key to trust', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'edge-untrusted-'))
    const { pid, dataDir, info } = await extraAgent(dir, ['--swarm-key', net.state.swarmKey], ['--replicas', '1'])
    try {
      const outsider = new AgentClient(info.api)
      await eventually(async () => (await a1.peers()).some(p => p.peerId === info.peerId), 10_000, 'outsider in the peer table')
      await outsider.deploy('evil', example('echo'))
      // An untrusted deploy changes nothing a name resolves to: 'evil' is not listed, and a call is
      // refused (403) with the key to trust once its announcement is in. It never runs.
      const signedBy = new RegExp(`every known version of 'evil' is signed by a key this agent does not trust \\(${info.peerId}\\)`)
      const refusal = await eventually(async () => {
        const err = await a1.invoke('evil', { input: Buffer.from('x') }).then(() => { throw new Error('evil ran') }, (e: ApiError) => e)
        return err.status === 403 ? err : undefined
      }, 10_000, 'agent 1 refusing evil')
      assert.match(refusal.message, signedBy)
      assert.equal((await a1.list()).some(f => f.name === 'evil'), false)
      for (const policy of ['near', 'local']) {
        await assert.rejects(a1.invoke('evil', { input: Buffer.from('x'), policy }), (err: ApiError) => {
          assert.equal(err.status, 403)
          assert.match(err.message, signedBy)
          return true
        })
      }
      // Nor does the outsider run what agent 1 deployed: it trusts neither agent 1 nor its key, so
      // 'echo' is no name it resolves, though it hears agent 1's adverts.
      await eventually(async () => (await outsider.peers()).some(p => p.peerId === net.agent(1).peerId), 10_000, 'agent 1 in the outsider\'s table')
      await assert.rejects(outsider.invoke('echo', { input: Buffer.from('x') }), { status: 404 })
      // An 'echo' of its own, and its delete, change nothing for agents that do not trust it.
      const ignored = async (): Promise<number> => await metricValue(net.agent(2).api, 'edge_announcements_ignored_total{reason="untrusted"}')
      const before = await ignored()
      await outsider.deploy('echo', example('primes'))
      await outsider.delete('echo')
      await eventually(async () => await ignored() >= before + 2, 10_000, 'agent 2 ignoring the outsider\'s deploy and delete of echo')
      const still = await a2.invoke('echo', { input: Buffer.from('mine') })
      assert.equal(text(still.outputBytes), 'mine')
      assert.equal(still.function.version, 1)
      assert.equal(still.function.sha256, createHash('sha256').update(example('echo')).digest('hex'))
      assert.equal(text((await a1.invoke('echo', { input: Buffer.from('kept') })).outputBytes), 'kept')
      assert.ok((await a3.list()).some(f => f.name === 'echo'))
      // Nor do its records reach the DHT of agents that do not trust it: no tombstone, no 'evil'.
      const m = await a3.manifest('echo')
      assert.equal(m.type, 'manifest')
      assert.equal(m.signer, net.agent(1).peerId)
      await assert.rejects(a2.manifest('evil'), { status: 404 })
    } finally {
      await stopAgent(pid, dataDir)
      rmSync(dir, { recursive: true, force: true })
    }
  })

  test('a deployer key of its own signs deploys and deletes; only agents that trust it run them', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'edge-key-'))
    const edge = async (k: number, args: string[]): Promise<Run> => await runNode(EDGE_BIN, ['--agent', net.agent(k).api, ...args])
    try {
      const keyFile = join(dir, 'deployer.key')
      const made = await runNode(EDGE_BIN, ['key', 'create', keyFile])
      assert.equal(made.code, 0, made.stderr)
      const id = /^(12D3\w+)$/m.exec(made.stdout)?.[1] as string
      assert.ok(id, made.stdout)
      assert.equal((await runNode(EDGE_BIN, ['key', 'show', keyFile])).stdout.trim(), id)
      assert.match((await runNode(EDGE_BIN, ['key', 'create', keyFile])).stderr, /exists: a deployer key is never overwritten/)
      const refused = await edge(1, ['deploy', 'keyed', 'examples/echo/echo.wasm', '--key', keyFile])
      assert.equal(refused.code, 1)
      assert.match(refused.stderr, new RegExp(`does not trust the deployer key ${id}: 'edge-agent trust add ${id}'`))
      // Agents 1 and 2 trust the key; agent 3 does not.
      for (const k of [1, 2]) {
        await runAgentCommand(['trust', 'add', id, '--data-dir', net.agent(k).dataDir])
        await net.stop(k)
        await net.start(k)
      }
      await net.waitForMesh()
      ;[a1, a2] = [net.client(1), net.client(2)]
      const dep = await edge(1, ['deploy', 'keyed', 'examples/echo/echo.wasm', '--key', keyFile, '--memory', '16MiB'])
      assert.equal(dep.code, 0, dep.stderr)
      assert.match(dep.stdout, /deployed keyed v1 .*memory 16 MiB/)
      assert.equal((await a1.manifest('keyed')).signer, id)
      await eventually(async () => (await a2.list()).some(f => f.name === 'keyed'), 10_000, 'keyed known on 2')
      assert.equal(text((await a2.invoke('keyed', { input: Buffer.from('signed'), policy: 'local' })).outputBytes), 'signed')
      // Agent 3 hears of it (the announcement, agents 1 and 2's adverts) and refuses it, naming the key.
      const refusal = await eventually(async () => {
        const err = await a3.invoke('keyed', { input: Buffer.from('x') }).then(() => { throw new Error('keyed ran on agent 3') }, (e: ApiError) => e)
        return err.status === 403 ? err : undefined
      }, 10_000, 'agent 3 refusing keyed')
      assert.match(refusal.message, new RegExp(`signed by a key this agent does not trust \\(${id}\\)|signed by ${id}, and this agent does not trust it`))
      assert.equal((await a3.list()).some(f => f.name === 'keyed'), false, 'not listed where it may not run')
      // A delete signed by the key reaches the agents that trust it.
      const del = await edge(2, ['delete', 'keyed', '--key', keyFile])
      assert.equal(del.code, 0, del.stderr)
      for (const c of [a1, a2]) await eventually(async () => !(await c.list()).some(f => f.name === 'keyed'), 10_000, 'keyed deleted')
      assert.equal((await a1.manifest('keyed')).type, 'tombstone')
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })

  test('a trusted provider that sends tampered chunks is caught and penalised; the code comes from another and the call runs', async () => {
    const { ADVERTS_TOPIC, chunk, encode, FETCH_CHUNK_BYTES, FETCH_PROTOCOL, FramedStream, MAX_FETCH_FRAME_BYTES, WIRE_VERSION } = await import('../../protocol/index.js')
    const { module, output } = bigModule(2_500_000)
    const chunks = chunk(module)
    assert.equal(chunks.length, 3)
    await a1.deploy('tampered', module)
    const dir = mkdtempSync(join(tmpdir(), 'edge-rogue-'))
    // A device agent 3 trusts (its adverts count), gone bad: it answers requests for the
    // function's chunks with junk of the right size.
    const { generateKeyPair } = await import('@libp2p/crypto/keys')
    const { peerIdFromPrivateKey } = await import('@libp2p/peer-id')
    const key = await generateKeyPair('Ed25519')
    await runAgentCommand(['trust', 'add', peerIdFromPrivateKey(key).toString(), '--data-dir', net.agent(3).dataDir])
    await net.stop(3)
    await net.start(3)
    await net.waitForMesh()
    a3 = net.client(3)
    const rogue = await bareMember(net, dir, { trusts: () => true, privateKey: key })
    let asked = 0
    try {
      await rogue.start()
      await rogue.handle(FETCH_PROTOCOL, (stream) => {
        const framed: InstanceType<typeof FramedStream> = new FramedStream(stream, {
          maxFrameBytes: 1024,
          maxWriteBytes: MAX_FETCH_FRAME_BYTES,
          onMessage: (message) => {
            asked++
            const size = chunks.find(c => c.cid.toString() === (message as { cid?: string }).cid)?.bytes.byteLength ?? 1
            void (async () => {
              await framed.write({ v: WIRE_VERSION, type: 'chunk-ok', size })
              const junk = Buffer.alloc(size, 7)
              for (let off = 0; off < size; off += FETCH_CHUNK_BYTES) await framed.write({ v: WIRE_VERSION, type: 'chunk', data: junk.subarray(off, off + FETCH_CHUNK_BYTES) })
              await framed.close()
            })().catch(() => {})
          },
          onClose: () => {}
        })
      })
      await eventually(() => rogue.getConnections().length > 0, 10_000, 'rogue connected')
      // It claims to hold the function (with no free slot, so that no call is sent to it).
      const sha256 = createHash('sha256').update(module).digest('hex')
      rogue.services.pubsub.subscribe(ADVERTS_TOPIC)
      let seq = 0
      const advertise = async (): Promise<void> => {
        await rogue.services.pubsub.publish(ADVERTS_TOPIC, encode({
          v: WIRE_VERSION, type: 'advert', peerId: rogue.peerId.toString(), addrs: rogue.getMultiaddrs().map(String), arch: process.arch, platform: process.platform, cpus: 1, memTotal: 1, memFree: 1,
          runtimes: [{ kind: 'wasm', slots: 1, busy: 1 }], queue: 0, labels: {}, warm: [], functions: [{ name: 'tampered', version: 1, sha256 }], seq: seq++, sentAt: Date.now()
        })).catch(() => {})
      }
      const timer = setInterval(() => { void advertise() }, 500)
      try {
        await eventually(async () => (await a3.list()).find(f => f.name === 'tampered')?.holders.includes(rogue.peerId.toString()), 10_000, 'the rogue listed as a holder on agent 3')
        const res = await a3.invoke('tampered', { policy: 'local', timeoutMs: 30_000 })
        assert.equal(text(res.outputBytes), output)
      } finally {
        clearInterval(timer)
      }
      assert.ok(asked >= 1, 'the rogue was asked for a chunk')
      const metrics = await (await fetch(`${net.agent(3).api}/metrics`)).text()
      assert.match(metrics, /^edge_fetch_bad_chunks_total [1-9]/m)
    } finally {
      await rogue.stop()
      rmSync(dir, { recursive: true, force: true })
    }
  })

  test('an agent with another swarm key cannot join', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'edge-stranger-'))
    const { pid, dataDir, info } = await extraAgent(dir, [])
    try {
      await sleep(3000)
      const stranger = new AgentClient(info.api)
      assert.equal((await stranger.peers()).length, 0)
      assert.equal((await stranger.status()).connections, 0)
      assert.equal((await a1.peers()).some(p => p.peerId === info.peerId), false)
    } finally {
      await stopAgent(pid, dataDir)
      rmSync(dir, { recursive: true, force: true })
    }
  })

  test('a call whose peer is killed mid-call is retried on another holder within the deadline', async () => {
    // A function held by agents 1 and 2 only (agent 3 may hold 'sleep' from the offload test).
    await a2.deploy('nap', fixture('sleep'), { timeout: '10s' })
    await eventually(async () => (await a1.list()).some(f => f.name === 'nap'), 10_000, 'nap known on 1')
    await a1.invoke('nap', { input: Buffer.from('1'), policy: 'local' })
    await eventually(async () => (await a3.list()).find(f => f.name === 'nap' && f.holders.length === 2), 10_000, 'two holders')
    const call = a3.invoke('nap', { input: Buffer.from('2000'), policy: 'near', timeoutMs: 20_000 })
    const victim = await eventually(async () => {
      for (const k of [1, 2]) if ((await net.client(k).status()).runtimes[0]?.busy === 1) return k
      return undefined
    }, 5000, 'a holder running the call')
    await net.stop(victim, { kill: true })
    const res = await call
    assert.equal(text(res.outputBytes), 'slept 2000\n')
    assert.equal(res.attempts[0]?.outcome, 'gone')
    assert.equal(res.attempts[0]?.peerId, net.agent(victim).peerId)
    assert.notEqual(res.ranOn, net.agent(victim).peerId)

    // The killed agent comes back on its old address with its identity and data, dialling no one:
    // the others redial it.
    const peerId = net.agent(victim).peerId
    await net.start(victim, { bootstrap: false })
    assert.equal(net.agent(victim).peerId, peerId)
    await net.waitForMesh(20_000)
    assert.ok((await net.client(victim).status()).functions.some(f => f.name === 'nap'), 'held code survived the crash')
  })
})
