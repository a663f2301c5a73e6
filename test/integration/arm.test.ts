import '../../agent/polyfill.js'
import { describe, test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { up, waitForAgent, type Testnet } from '../../testnet/index.js'
import { runAgentCommand, spawnAgent, stopAgent } from '../../testnet/process.js'
import { AgentClient } from '../../cli/client.js'
import { armBoardsForTests, eventually, example, text } from '../helpers.js'

/**
 * Emulated Raspberry Pi class boards in a swarm: an agent on Node's linux-arm64 build and one on
 * its armv7 build (Node 20.11, as 32-bit Raspberry Pi OS would run), each under qemu-user, join an
 * x64 agent over TCP with the same checkout and node_modules (native parts from their ARM
 * prebuilds, or JavaScript). They advertise their arch, run WASM functions fetched from the x64
 * agent, and what one board deploys runs on the others.
 */
const boards = armBoardsForTests()

interface Board { name: 'arm64' | 'armv7', arch: string, dataDir: string, pid: number, peerId: string, client: AgentClient }

describe('ARM boards (emulated) in a swarm', { skip: boards.skip }, () => {
  const dir = mkdtempSync(join(tmpdir(), 'edge-arm-'))
  let net: Testnet
  const started: Board[] = []
  const board = (name: Board['name']): Board => started.find(b => b.name === name) as Board

  before(async () => {
    const specs = [{ name: 'arm64' as const, arch: 'arm64', node: boards.arm64 }, { name: 'armv7' as const, arch: 'arm', node: boards.armv7 }]
    net = await up({ peers: 1, agentArgs: () => ['--no-docker'] })
    const ids = await Promise.all(specs.map(async (s) => {
      const out = await runAgentCommand(['init', '--data-dir', join(dir, s.name), '--swarm-key', net.state.swarmKey])
      return /agent (\S+) in /.exec(out)?.[1] ?? ''
    }))
    // One owner's devices: each runs what the others deploy (the x64 agent reads its trust at start).
    await net.stop(1)
    await runAgentCommand(['trust', 'add', ...ids, '--data-dir', net.agent(1).dataDir])
    await net.start(1)
    await Promise.all(specs.map(async (s, i) => {
      const dataDir = join(dir, s.name)
      await runAgentCommand(['trust', 'add', net.agent(1).peerId, ...ids.filter((_id, j) => j !== i), '--data-dir', dataDir])
      const logFile = join(dir, `${s.name}.log`)
      // Prebuilt binaries only: a native part compiled for this x64 host must not shadow its ARM prebuild.
      const pid = spawnAgent(['--data-dir', dataDir, '--listen', '/ip4/127.0.0.1/tcp/0', '--api-port', '0', '--no-mdns', '--no-docker',
        '--bootstrap', net.agent(1).addrs[0] ?? ''], logFile, { PREBUILDS_ONLY: '1' }, s.node)
      const b: Board = { name: s.name, arch: s.arch, dataDir, pid, peerId: ids[i] ?? '', client: new AgentClient('http://127.0.0.1:1') }
      started.push(b)
      const info = await waitForAgent(dataDir, pid, logFile, 120_000)
      assert.equal(info.peerId, b.peerId)
      b.client = new AgentClient(info.api, { timeoutMs: 60_000 })
    }))
  })

  after(async () => {
    await Promise.all(started.map(async b => { await stopAgent(b.pid, b.dataDir) }))
    await net?.down()
    rmSync(dir, { recursive: true, force: true })
  })

  test('each board reports its arch, and the x64 agent sees both', async () => {
    for (const b of started) {
      const status = await b.client.status()
      assert.equal(status.arch, b.arch)
      assert.equal(status.runtimes[0]?.kind, 'wasm')
    }
    await eventually(async () => {
      const peers = await net.client(1).peers()
      return started.every(b => peers.find(p => p.peerId === b.peerId)?.arch === b.arch)
    }, 30_000, 'both boards in the x64 agent\'s peer table')
  })

  test('a function deployed on x64 runs on each board, fetched there chunk by chunk', async () => {
    await net.client(1).deploy('primes', example('primes'))
    for (const b of started) {
      const r = await net.client(1).invoke('primes', { params: { n: 10000 }, peer: b.peerId, timeoutMs: 60_000 })
      assert.equal(text(r.outputBytes), '{"n":10000,"primes":1229}\n')
      assert.equal(r.ranOn, b.peerId)
      assert.ok(r.timings.fetchMs > 0, `${b.name} fetched the code`)
    }
  })

  test('what the armv7 board deploys runs on arm64 and on x64', async () => {
    await board('armv7').client.deploy('echo', example('echo'))
    const armv7 = board('armv7').peerId
    await eventually(async () => (await board('arm64').client.list()).some(f => f.name === 'echo' && f.holders.includes(armv7)), 30_000, 'echo known on arm64')
    const onArm64 = await board('arm64').client.invoke('echo', { input: Buffer.from('from a 32-bit board'), policy: 'local', timeoutMs: 60_000 })
    assert.equal(text(onArm64.outputBytes), 'from a 32-bit board')
    assert.equal(onArm64.ranOn, board('arm64').peerId)
    const onX64 = await net.client(1).invoke('echo', { input: Buffer.from('to x64'), policy: 'local', timeoutMs: 60_000 })
    assert.equal(text(onX64.outputBytes), 'to x64')
  })
})
