import '../../agent/polyfill.js'
import { describe, test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { up, waitForAgent, type Testnet } from '../../testnet/index.js'
import { runAgentCommand, spawnAgent, stopAgent } from '../../testnet/process.js'
import { AgentClient } from '../../cli/client.js'
import { arm64ForTests, eventually, example, text } from '../helpers.js'

/**
 * An emulated Raspberry Pi class board in a swarm: an agent on Node's linux-arm64 build under
 * qemu-user joins an x64 agent over TCP, with the same checkout and node_modules (native parts
 * from their arm64 prebuilds, or JavaScript). It advertises arm64, runs WASM functions it fetched
 * from the x64 agent, and the x64 agent runs what it deploys.
 */
const { node, skip } = arm64ForTests()

describe('an arm64 agent (emulated) in a swarm', { skip }, () => {
  const dir = mkdtempSync(join(tmpdir(), 'edge-arm-'))
  const dataDir = join(dir, 'arm-agent')
  let net: Testnet
  let armPid = 0
  let arm: AgentClient
  let armId = ''

  before(async () => {
    net = await up({ peers: 1, agentArgs: () => ['--no-docker'] })
    const init = await runAgentCommand(['init', '--data-dir', dataDir, '--swarm-key', net.state.swarmKey])
    armId = /agent (\S+) in /.exec(init)?.[1] ?? ''
    // Each runs what the other deploys, as one owner's devices do (the x64 agent reads its trust at start).
    await runAgentCommand(['trust', 'add', net.agent(1).peerId, '--data-dir', dataDir])
    await net.stop(1)
    await runAgentCommand(['trust', 'add', armId, '--data-dir', net.agent(1).dataDir])
    await net.start(1)
    const logFile = join(dir, 'arm-agent.log')
    // Prebuilt binaries only: a native part compiled for this x64 host must not shadow its arm64 prebuild.
    armPid = spawnAgent(['--data-dir', dataDir, '--listen', '/ip4/127.0.0.1/tcp/0', '--api-port', '0', '--no-mdns', '--no-docker',
      '--bootstrap', net.agent(1).addrs[0] ?? ''], logFile, { PREBUILDS_ONLY: '1' }, node)
    const info = await waitForAgent(dataDir, armPid, logFile, 90_000)
    assert.equal(info.peerId, armId)
    arm = new AgentClient(info.api, { timeoutMs: 60_000 })
  })

  after(async () => {
    await stopAgent(armPid, dataDir)
    await net?.down()
    rmSync(dir, { recursive: true, force: true })
  })

  test('it reports arm64, and the x64 agent sees it as an arm64 peer', async () => {
    const status = await arm.status()
    assert.equal(status.arch, 'arm64')
    assert.equal(status.runtimes[0]?.kind, 'wasm')
    const peer = await eventually(async () => (await net.client(1).peers()).find(p => p.peerId === armId), 30_000, 'the arm64 agent in the x64 agent\'s peer table')
    assert.equal(peer.arch, 'arm64')
  })

  test('a function deployed on x64 runs on the arm64 agent, fetched there chunk by chunk', async () => {
    await net.client(1).deploy('primes', example('primes'))
    const r = await net.client(1).invoke('primes', { params: { n: 10000 }, peer: armId, timeoutMs: 60_000 })
    assert.equal(text(r.outputBytes), '{"n":10000,"primes":1229}\n')
    assert.equal(r.ranOn, armId)
    assert.ok(r.timings.fetchMs > 0, 'the arm64 agent fetched the code')
  })

  test('a function deployed on arm64 runs on x64', async () => {
    await arm.deploy('echo', example('echo'))
    await eventually(async () => (await net.client(1).list()).some(f => f.name === 'echo' && f.holders.includes(armId)), 30_000, 'echo known on x64')
    const r = await net.client(1).invoke('echo', { input: Buffer.from('from a board'), policy: 'local', timeoutMs: 60_000 })
    assert.equal(text(r.outputBytes), 'from a board')
    assert.equal(r.ranOn, net.agent(1).peerId)
  })
})
