import { describe, test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type Docker from 'dockerode'
import { Testnet, up } from '../../testnet/index.js'
import { OWNER_LABEL } from '../../runtimes/docker/index.js'
import { dockerForTests, EDGE_BIN, eventually, runNode, type Run } from '../helpers.js'

/**
 * Container functions through agents and the CLI, in a mixed testnet: agent 1 has Docker, agent 2
 * runs with --no-docker. Deploys of each format, offload to the one agent that can run them,
 * prewarm, settings checked before upload, and the reaping of containers after a kill -9.
 */
const { docker, skip } = await dockerForTests()

interface InvokeJson { output: string, ranOn: string, local: boolean, warm: boolean, timings: { initMs?: number } }

describe('container functions in a mixed testnet', { skip }, () => {
  const home = mkdtempSync(join(tmpdir(), 'edge-containers-'))
  const env = { EDGE_TESTNET_HOME: join(home, 'testnet') }
  let net: Testnet

  async function edge (args: string[]): Promise<Run> {
    return await runNode(EDGE_BIN, args, { env })
  }

  async function invoke (node: number, args: string[]): Promise<InvokeJson> {
    const r = await edge(['--node', String(node), '--json', 'invoke', ...args])
    assert.equal(r.code, 0, r.stderr)
    return JSON.parse(r.stdout) as InvokeJson
  }

  const output = (r: InvokeJson): string => Buffer.from(r.output, 'base64').toString('utf8')

  async function containersOf (peerId: string): Promise<Docker.ContainerInfo[]> {
    return await (docker as Docker).listContainers({ all: true, filters: { label: [`${OWNER_LABEL}=${peerId}`] } })
  }

  before(async () => {
    const r = await edge(['testnet', 'up', '--peers', '2', '--docker-peers', '1'])
    assert.equal(r.code, 0, r.stderr)
    net = Testnet.load(join(home, 'testnet')) as Testnet
  })

  after(async () => {
    const ids = net?.agents.map(a => a.peerId) ?? []
    await net?.down()
    // Agents remove their containers when they stop; a failed test must not leave any either.
    for (const id of ids) for (const c of await containersOf(id)) await (docker as Docker).getContainer(c.Id).remove({ force: true })
    rmSync(home, { recursive: true, force: true })
  })

  test('an agent without Docker advertises WASM only, and says why', async () => {
    const status = await edge(['--node', '2', 'status'])
    assert.match(status.stdout, /no containers: turned off \(--no-docker\)/)
    const peers = await edge(['--node', '1', '--json', 'peers'])
    const two = (JSON.parse(peers.stdout) as Array<{ runtimes: Array<{ kind: string }> }>)[0]
    assert.deepEqual(two?.runtimes.map(r => r.kind), ['wasm'])
    const one = await edge(['--node', '2', '--json', 'peers'])
    assert.deepEqual((JSON.parse(one.stdout) as Array<{ runtimes: Array<{ kind: string }> }>)[0]?.runtimes.map(r => r.kind), ['wasm', 'node', 'python', 'binary'])
  })

  test('a node function deployed on the agent without Docker runs on the one with it', async () => {
    const dep = await edge(['--node', '2', 'deploy', 'sieve', 'examples/sieve-node'])
    assert.equal(dep.code, 0, dep.stderr)
    assert.match(dep.stdout, /deployed sieve v1 \(node \(index\.js\), /)
    const first = await invoke(2, ['sieve'])
    assert.equal(output(first), 'Found 1229 primes under 10000')
    assert.equal(first.ranOn, net.agent(1).peerId)
    assert.equal(first.warm, false)
    assert.ok((first.timings.initMs ?? 0) > 0)
    const again = await invoke(2, ['sieve', '-p', 'n:100'])
    assert.equal(output(again), 'Found 25 primes under 100')
    // Warm: the container the first call started serves it (the status shows it, should it not be).
    const status = await edge(['--node', '1', '--json', 'status'])
    assert.equal(again.warm, true, `second call ran cold: ${JSON.stringify(again)}; agent 1: ${status.stdout}`)
    // Asked to run it itself, the agent without Docker says it cannot.
    const local = await edge(['--node', '2', 'invoke', 'sieve', '--local'])
    assert.equal(local.code, 1)
    assert.match(local.stderr, /no node runtime here \(no Docker\)/)
  })

  test('python and binary functions, from a directory and from one file', async () => {
    const py = await edge(['--node', '1', 'deploy', 'echo-py', 'examples/echo-python/handler.py'])
    assert.equal(py.code, 0, py.stderr)
    const r = JSON.parse(output(await invoke(1, ['echo-py', '-p', 'x:1']))) as { echo: unknown }
    assert.deepEqual(r.echo, { x: 1 })
    const sh = await edge(['--node', '1', 'deploy', 'echo-sh', 'examples/echo-sh', '--runtime', 'binary'])
    assert.equal(sh.code, 0, sh.stderr)
    const data = await edge(['--node', '2', 'invoke', 'echo-sh', '--data', 'from two'])
    assert.equal(data.stdout, 'echo: from two\n')
  })

  test('prewarm starts containers ahead, so the first call is warm', async () => {
    const dep = await edge(['--node', '1', 'deploy', 'probe', 'test/fixtures/containers/node-probe', '--env', 'GREETING=hi', '--keepalive', '5m'])
    assert.equal(dep.code, 0, dep.stderr)
    const warm = await edge(['--node', '1', 'prewarm', 'probe', '--count', '1'])
    assert.equal(warm.code, 0, warm.stderr)
    assert.match(warm.stdout, /^probe v1: 1 warm container \(1 started now\)$/m)
    const r = await invoke(1, ['probe'])
    assert.equal(r.warm, true)
    assert.equal((JSON.parse(output(r)) as { env: string }).env, 'hi')
    const inspect = await edge(['--node', '2', 'inspect', 'probe'])
    assert.match(inspect.stdout, /^entry +index\.js$/m)
    assert.match(inspect.stdout, /^container +keepalive 300\.0 s$/m)
    assert.match(inspect.stdout, /^env +GREETING$/m)
    const no = await edge(['--node', '2', 'prewarm', 'probe'])
    assert.equal(no.code, 1)
    assert.match(no.stderr, /this agent runs no containers: turned off/)
  })

  test('bad deploys fail on one line before anything runs', async () => {
    const dir = join(home, 'fns')
    mkdirSync(join(dir, 'noexec'), { recursive: true })
    writeFileSync(join(dir, 'noexec', 'handler'), '#!/bin/sh\necho hi\n')
    chmodSync(join(dir, 'noexec', 'handler'), 0o644)
    mkdirSync(join(dir, 'empty-ish'), { recursive: true })
    writeFileSync(join(dir, 'empty-ish', 'README'), 'nothing to run')
    const cases: Array<[string[], RegExp]> = [
      [['deploy', 'x', join(dir, 'noexec'), '--runtime', 'binary'], /'handler' is not executable: chmod \+x it/],
      [['deploy', 'x', join(dir, 'empty-ish')], /cannot tell how the function in .* runs: give --runtime/],
      [['deploy', 'x', join(dir, 'empty-ish'), '--runtime', 'python'], /cannot tell which file holds the python function/],
      [['deploy', 'x', 'examples/sieve-node', '--entry', 'nope.js'], /has no file 'nope\.js'/],
      [['deploy', 'x', 'examples/echo/echo.wasm', '--network'], /are for node, python and binary functions/],
      [['deploy', 'x', 'examples/sieve-node', '--env', 'EDGE_ENTRY=x'], /not starting with EDGE_/],
      [['deploy', 'x', 'examples/sieve-node', '--memory', '1MiB'], /must be at least 16 MiB/]
    ]
    for (const [args, pattern] of cases) {
      const r = await edge(['--node', '1', ...args])
      assert.equal(r.code, 1, `${args.join(' ')}: ${r.stdout}`)
      assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr)
      assert.match(r.stderr, pattern)
    }
    const list = await edge(['--node', '1', '--json', 'list'])
    assert.ok(!(JSON.parse(list.stdout) as Array<{ name: string }>).some(f => f.name === 'x'))
  })

  test('containers left by a killed agent are removed when it starts again', async () => {
    const peerId = net.agent(1).peerId
    const warm = await edge(['--node', '1', 'prewarm', 'sieve', '--count', '2'])
    assert.equal(warm.code, 0, warm.stderr)
    assert.ok((await containersOf(peerId)).length >= 2)
    await net.stop(1, { kill: true })
    // Killed, it could not clean up: its containers are still there.
    assert.ok((await containersOf(peerId)).length >= 2)
    await net.start(1)
    await eventually(async () => (await containersOf(peerId)).length === 0, 10_000, 'the leftovers to be reaped')
    await net.waitForMesh(20_000)
    const r = await invoke(2, ['sieve'])
    assert.equal(output(r), 'Found 1229 primes under 10000')
    assert.equal(r.ranOn, peerId)
    // The code it held before the crash is ready again as it was: the next call is warm.
    assert.equal((await invoke(2, ['sieve'])).warm, true)
  })
})

describe('the containers of an agent killed with -9', { skip }, () => {
  test('exit with it, and testnet down removes them', async () => {
    const net = await up({ peers: 1 })
    const peerId = net.agent(1).peerId
    const containers = async (): Promise<Docker.ContainerInfo[]> => await (docker as Docker).listContainers({ all: true, filters: { label: [`${OWNER_LABEL}=${peerId}`] } })
    try {
      const edge = async (args: string[]): Promise<Run> => await runNode(EDGE_BIN, ['--agent', net.agent(1).api, ...args])
      const dep = await edge(['deploy', 'sieve', 'examples/sieve-node'])
      assert.equal(dep.code, 0, dep.stderr)
      const warm = await edge(['prewarm', 'sieve', '--count', '2'])
      assert.equal(warm.code, 0, warm.stderr)
      assert.equal((await containers()).filter(c => c.State === 'running').length, 2)
      await net.stop(1, { kill: true })
      // Their stdin closes with the agent's attach streams: each runner reads EOF and exits.
      await eventually(async () => { const cs = await containers(); return cs.length === 2 && cs.every(c => c.State === 'exited') }, 15_000, 'the containers to exit with their agent')
      await net.down()
      assert.deepEqual(await containers(), [], 'testnet down removes what the killed agent left')
    } finally {
      await net.down()
      for (const c of await containers()) await (docker as Docker).getContainer(c.Id).remove({ force: true })
    }
  })
})
