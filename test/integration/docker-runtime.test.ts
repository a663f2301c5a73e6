import { describe, test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { randomUUID } from 'node:crypto'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type Docker from 'dockerode'
import { DockerRuntime, OWNER_LABEL } from '../../runtimes/docker/index.js'
import type { FunctionSpec } from '../../protocol/index.js'
import { containerFunction, dockerForTests, eventually, text } from '../helpers.js'

/**
 * The Docker runtime against a real Docker daemon: each function format end to end, the warm pool
 * (reuse, keepalive, caps, single use, prewarm), limits (time, memory, processes) and reaping.
 */
const { docker, skip } = await dockerForTests()

const MiB = 1024 * 1024
const input = (o: unknown): Uint8Array => Buffer.from(JSON.stringify(o))

describe('Docker runtime', { skip }, () => {
  const owner = `test-${randomUUID()}`
  const dir = mkdtempSync(join(tmpdir(), 'edge-docker-rt-'))
  let rt: DockerRuntime

  /** Containers Docker has for this test's owner label. */
  async function ours (): Promise<Docker.ContainerInfo[]> {
    return await (docker as Docker).listContainers({ all: true, filters: { label: [`${OWNER_LABEL}=${owner}`] } })
  }

  async function deploy (name: string, path: string, runtime: 'node' | 'python' | 'binary', extra: Partial<FunctionSpec> = {}): Promise<FunctionSpec> {
    const { spec, code } = await containerFunction(name, path, runtime, extra)
    await rt.prepare(spec, code)
    return spec
  }

  before(async () => {
    rt = new DockerRuntime({ docker: docker as Docker, owner, dir: join(dir, 'fn'), slots: 4, keepaliveMs: 30_000 })
    await rt.start()
  })

  after(async () => {
    await rt?.stop()
    for (const c of await ours()) await (docker as Docker).getContainer(c.Id).remove({ force: true })
    rmSync(dir, { recursive: true, force: true })
  })

  test('node: a sieve, cold then warm in the same container', async () => {
    const spec = await deploy('sieve', 'examples/sieve-node', 'node')
    assert.equal(spec.entry, 'index.js')
    const cold = await rt.invoke(spec, new Uint8Array())
    assert.equal(text(cold.output), 'Found 1229 primes under 10000')
    assert.equal(cold.warm, false)
    assert.ok(cold.initMs !== undefined && cold.initMs > 0)
    const warm = await rt.invoke(spec, input({ n: 100 }))
    assert.equal(text(warm.output), 'Found 25 primes under 100')
    assert.equal(warm.warm, true)
    assert.equal(warm.initMs, undefined)
    assert.equal((await ours()).length, 1)
  })

  test('python: an echo, with what it prints kept apart from its result', async () => {
    const spec = await deploy('echo-py', 'examples/echo-python', 'python')
    const r = await rt.invoke(spec, input({ hello: 'world' }))
    const out = JSON.parse(text(r.output)) as { echo: unknown, function: string }
    assert.deepEqual(out.echo, { hello: 'world' })
    assert.equal(out.function, 'echo-py')
    assert.equal(r.stderr, 'echo called\n')
  })

  test('binary: a shell script reading stdin and writing stdout', async () => {
    const spec = await deploy('echo-sh', 'examples/echo-sh', 'binary')
    const r = await rt.invoke(spec, Buffer.from('hi there'))
    assert.equal(text(r.output), 'echo: hi there\n')
    const empty = await rt.invoke(spec, new Uint8Array())
    assert.equal(text(empty.output), 'echo: \n')
  })

  test('failures are the function\'s: a throw, an exit code, a module that does not load', async () => {
    const py = await deploy('fail-py', 'test/fixtures/containers/python-fail', 'python')
    await assert.rejects(rt.invoke(py, input({ thing: 'x' })), (err: Error & { stderr: string }) => {
      assert.equal(err.name, 'FunctionError')
      assert.match(err.message, /failed: ValueError: no such thing: x/)
      assert.match(err.stderr, /Traceback/)
      return true
    })
    const sh = await deploy('fail-sh', 'test/fixtures/containers/sh-fail', 'binary')
    await assert.rejects(rt.invoke(sh, new Uint8Array()), { name: 'FunctionError', message: /exited with code 3/, stderr: 'something went wrong\n' })
    const broken = await deploy('broken', 'test/fixtures/containers/node-broken', 'node')
    await assert.rejects(rt.invoke(broken, new Uint8Array()), { name: 'FunctionError', message: /failed to load: .*SyntaxError/s })
    // The container that did not load is gone; the python one stays warm and still answers.
    await assert.rejects(rt.invoke(py, input({ thing: 'y' })), { message: /no such thing: y/ })
  })

  test('a function runs as nobody, with the environment its manifest gives', async () => {
    const spec = await deploy('probe-env', 'test/fixtures/containers/node-probe', 'node', { env: { GREETING: 'hello' } })
    const out = JSON.parse(text((await rt.invoke(spec, input({}))).output)) as { uid: number, env: string }
    assert.equal(out.uid, 65534)
    assert.equal(out.env, 'hello')
  })

  test('keepalive: an idle container is removed, and the next call starts a new one', async () => {
    const spec = await deploy('probe-keepalive', 'test/fixtures/containers/node-probe', 'node', { container: { keepaliveMs: 300 } })
    assert.ok(!rt.isWarm(spec), 'prepared, but no container yet')
    const first = JSON.parse(text((await rt.invoke(spec, input({}))).output)) as { host: string }
    assert.ok(rt.isWarm(spec), 'warm while its container lives')
    await eventually(() => rt.containers().functions.every(f => f.name !== 'probe-keepalive'), 5000, 'the idle container to expire')
    assert.ok(!rt.isWarm(spec), 'cold again once its container expired')
    const again = await rt.invoke(spec, input({}))
    assert.equal(again.warm, false)
    assert.notEqual((JSON.parse(text(again.output)) as { host: string }).host, first.host)
  })

  test('caps: at most maxContainers containers, each serving `concurrency` calls at once', async () => {
    const spec = await deploy('probe-cap', 'test/fixtures/containers/node-probe', 'node', { container: { maxContainers: 2 } })
    const results = await Promise.all([1, 2, 3, 4].map(async () => JSON.parse(text((await rt.invoke(spec, input({ ms: 300 }))).output)) as { host: string, peak: number }))
    assert.equal(new Set(results.map(r => r.host)).size, 2)
    assert.ok(results.every(r => r.peak === 1), 'a container of concurrency 1 had two calls at once')
    const shared = await deploy('probe-shared', 'test/fixtures/containers/node-probe', 'node', { container: { maxContainers: 1, concurrency: 3 } })
    const together = await Promise.all([1, 2, 3].map(async () => JSON.parse(text((await rt.invoke(shared, input({ ms: 400 }))).output)) as { host: string, peak: number }))
    assert.equal(new Set(together.map(r => r.host)).size, 1)
    // The container saw all three calls in flight at once, rather than one after another.
    assert.equal(Math.max(...together.map(r => r.peak)), 3, 'calls ran one after another')
    // Both containers busy: a call that may not wait is refused at once.
    const long = [rt.invoke(spec, input({ ms: 500 })), rt.invoke(spec, input({ ms: 500 }))]
    await assert.rejects(rt.invoke(spec, input({}), { queue: false }), { name: 'BusyError' })
    await Promise.all(long)
  })

  test('single-use: a fresh container for every call, removed after it', async () => {
    const spec = await deploy('probe-once', 'test/fixtures/containers/node-probe', 'node', { container: { singleUse: true } })
    const a = await rt.invoke(spec, input({}))
    const b = await rt.invoke(spec, input({}))
    assert.equal(a.warm || b.warm, false)
    assert.notEqual((JSON.parse(text(a.output)) as { host: string }).host, (JSON.parse(text(b.output)) as { host: string }).host)
    await eventually(async () => (await ours()).every(c => c.Labels['edge.function'] !== 'probe-once'), 5000, 'single-use containers to go')
    await assert.rejects(rt.prewarm(spec, 1), { message: /single-use/ })
  })

  test('prewarm: containers started ahead serve the first call warm', async () => {
    const spec = await deploy('probe-warm', 'test/fixtures/containers/node-probe', 'node')
    assert.deepEqual(await rt.prewarm(spec, 2), { started: 2, warm: 2 })
    assert.deepEqual(await rt.prewarm(spec, 2), { started: 0, warm: 2 })
    const r = await rt.invoke(spec, input({}))
    assert.equal(r.warm, true)
  })

  test('a call past its time limit is stopped with its container; the next one gets a new container', async () => {
    const spec = await deploy('spin', 'test/fixtures/containers/node-spin', 'node', { timeoutMs: 500 })
    await assert.rejects(rt.invoke(spec, new Uint8Array()), { name: 'FunctionError', message: /timed out after 500 ms and was stopped/ })
    await assert.rejects(rt.invoke(spec, new Uint8Array()), { name: 'FunctionError', message: /timed out/ })
    const echo = await deploy('echo-sh', 'examples/echo-sh', 'binary')
    assert.equal(text((await rt.invoke(echo, Buffer.from('still here'))).output), 'echo: still here\n')
  })

  test('a function past its memory limit is killed and reported as out of memory', async () => {
    const spec = await deploy('hog', 'test/fixtures/containers/node-hog', 'node', { memoryBytes: 64 * MiB })
    await assert.rejects(rt.invoke(spec, new Uint8Array()), { name: 'FunctionError', message: /ran out of memory \(limit 64 MiB\) and was killed/ })
  })

  test('a fork bomb stays within its container\'s process limit and is stopped', async () => {
    const spec = await deploy('bomb', 'test/fixtures/containers/sh-forkbomb', 'binary', { timeoutMs: 3000, container: { pids: 32 } })
    await assert.rejects(rt.invoke(spec, new Uint8Array()), { name: 'FunctionError', message: /exited with code|timed out/ })
    const echo = await deploy('echo-sh', 'examples/echo-sh', 'binary')
    assert.equal(text((await rt.invoke(echo, Buffer.from('fine'))).output), 'echo: fine\n')
  })

  test('containers are hardened: read-only root, no network, no capabilities, limits set', async () => {
    const spec = await deploy('probe-hard', 'test/fixtures/containers/node-probe', 'node', { memoryBytes: 96 * MiB, container: { cpus: 0.5, pids: 40 } })
    await rt.prewarm(spec, 1)
    const c = (await ours()).find(c => c.Labels['edge.function'] === 'probe-hard')
    assert.ok(c !== undefined)
    const info = await (docker as Docker).getContainer(c.Id).inspect()
    assert.equal(info.Config.User, '65534:65534')
    assert.equal(info.HostConfig.NetworkMode, 'none')
    assert.equal(info.HostConfig.ReadonlyRootfs, true)
    assert.deepEqual(info.HostConfig.CapDrop, ['ALL'])
    assert.deepEqual(info.HostConfig.SecurityOpt, ['no-new-privileges'])
    assert.equal(info.HostConfig.Memory, 96 * MiB)
    assert.equal(info.HostConfig.MemorySwap, 96 * MiB)
    assert.equal(info.HostConfig.NanoCpus, 0.5e9)
    assert.equal(info.HostConfig.PidsLimit, 40)
    assert.match(info.HostConfig.Binds?.[0] ?? '', /:\/fn:ro$/)
  })

  test('a runtime that starts again under the same owner removes what the previous run left', async () => {
    const spec = await deploy('probe-left', 'test/fixtures/containers/node-probe', 'node')
    await rt.prewarm(spec, 1)
    const before = (await ours()).length
    assert.ok(before >= 1)
    // As if the agent had been killed: a new runtime of the same owner, the old one never stopped.
    const next = new DockerRuntime({ docker: docker as Docker, owner, dir: join(dir, 'fn') })
    await next.start()
    assert.equal((await ours()).length, 0)
    await next.stop()
    await eventually(() => rt.containers().total === 0, 5000, 'the old runtime to notice')
    // The old runtime finds its containers gone and starts new ones as calls need them.
    assert.equal(JSON.parse(text((await rt.invoke(spec, input({}))).output)).uid, 65534)
  })

  test('a warm container removed behind the agent\'s back is replaced: the next call starts a new one', async () => {
    const spec = await deploy('probe-gone', 'test/fixtures/containers/node-probe', 'node')
    const first = JSON.parse(text((await rt.invoke(spec, input({}))).output)) as { host: string }
    // Its hostname is the container's short id.
    const info = (await ours()).find(c => c.Id.startsWith(first.host))
    assert.ok(info !== undefined)
    await (docker as Docker).getContainer(info.Id).remove({ force: true })
    await eventually(() => !rt.isWarm(spec), 5000, 'the agent to see its container gone')
    const again = await rt.invoke(spec, input({}))
    assert.equal(again.warm, false)
    assert.notEqual((JSON.parse(text(again.output)) as { host: string }).host, first.host)
  })

  test('stop removes every container', async () => {
    const spec = await deploy('probe-stop', 'test/fixtures/containers/node-probe', 'node')
    await rt.prewarm(spec, 2)
    assert.ok((await ours()).length >= 2)
    await rt.stop()
    assert.equal((await ours()).length, 0)
    await rt.start()
  })
})
