import { spawn } from 'node:child_process'
import { createHash } from 'node:crypto'
import { mkdtempSync, rmSync, writeFileSync, chmodSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { PassThrough, type Duplex } from 'node:stream'
import type Docker from 'dockerode'
import { connectDocker, containerOptions, DockerRuntime, OWNER_LABEL, RUN_AS } from '../runtimes/docker/index.js'
import { up, type Testnet } from '../testnet/index.js'
import { packFunction, type FunctionSpec } from '../protocol/index.js'
import { measureWrk } from './wrk.js'
import { pct, sorted } from './stats.js'

/**
 * Container functions, against baselines measured in the same run (issue 5):
 *  - cold start through the agent (a single-use function: every call creates, starts and calls a
 *    container) vs a bare dockerode create + attach + start + first call of the same image, runner
 *    and limits (target ≤ 1.1×); a raw `docker run` for reference;
 *  - the first call on a prewarmed container (target < 5 ms);
 *  - warm invoke through the agent vs the raw stdin/stdout round trip to a container (target: adds
 *    < 1.5 ms p50);
 *  - throughput with 4 warm containers vs 4 raw containers driven directly.
 */

const COLD_RUNS = Number(process.env.BENCH_COLD_RUNS ?? 8)
const WARM_CALLS = Number(process.env.BENCH_WARM_CALLS ?? 1000)
const THROUGHPUT_CALLS = Number(process.env.BENCH_CONTAINER_CALLS ?? 4000)
const ECHO_JS = 'module.exports = async (params) => params\n'
const REQUEST = Buffer.from('{"hello":"edge"}')

type Print = (title: string, headers: string[], rows: string[][]) => void

const f = (ms: number): string => ms < 10 ? ms.toFixed(3) : ms.toFixed(1)

/** A container of the node image running the runner on the function in `dir`, as the agent makes them, driven by hand. */
class RawContainer {
  #pending = new Map<number, (err?: Error) => void>()
  #buf = ''
  #next = 1
  stream!: Duplex
  container!: Docker.Container

  async start (docker: Docker, image: string, dir: string, owner: string): Promise<void> {
    // The same container as the agent's: image, runner, limits and hardening.
    this.container = await docker.createContainer(containerOptions({ spec: echoSpecFor(new Uint8Array(0)), image, dir, owner }))
    this.stream = await this.container.attach({ stream: true, stdin: true, stdout: true, stderr: true, hijack: true }) as unknown as Duplex
    const out = new PassThrough()
    docker.modem.demuxStream(this.stream, out, new PassThrough())
    const ready = new Promise<void>((resolve, reject) => { this.#pending.set(0, (err) => { if (err === undefined) resolve(); else reject(err) }) })
    this.stream.on('close', () => {
      for (const settle of this.#pending.values()) settle(new Error('the container went away'))
      this.#pending.clear()
    })
    out.on('data', (chunk: Buffer) => {
      this.#buf += chunk.toString('utf8')
      for (let nl = this.#buf.indexOf('\n'); nl !== -1; nl = this.#buf.indexOf('\n')) {
        const line = this.#buf.slice(0, nl)
        this.#buf = this.#buf.slice(nl + 1)
        const reply = JSON.parse(line) as { id?: number }
        const id = reply.id ?? 0
        this.#pending.get(id)?.()
        this.#pending.delete(id)
      }
    })
    await this.container.start()
    await ready
  }

  async call (): Promise<void> {
    const id = this.#next++
    await new Promise<void>((resolve, reject) => {
      this.#pending.set(id, (err) => { if (err === undefined) resolve(); else reject(err) })
      this.stream.write(`{"id":${id},"ms":5000,"in":"${REQUEST.toString('base64')}"}\n`)
    })
  }

  async remove (): Promise<void> {
    this.stream.destroy()
    await this.container.remove({ force: true })
  }
}

async function dockerRun (image: string, dir: string): Promise<number> {
  const started = performance.now()
  await new Promise<void>((resolve, reject) => {
    const child = spawn('docker', ['run', '--rm', '-i', '--network', 'none', '--user', RUN_AS, '--read-only', '--tmpfs', '/tmp', '--cap-drop', 'ALL',
      '--memory', '128m', '--log-driver', 'none', '-v', `${dir}:/fn:ro`, '-e', 'EDGE_ENTRY=index.js', image, 'node', '/edge/runner.mjs'], { stdio: ['pipe', 'pipe', 'inherit'] })
    let out = ''
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString()
      // The runner's ready line, then the response: close stdin so that it exits.
      if (out.split('\n').length > 2) child.stdin.end()
    })
    child.on('error', reject)
    child.on('close', (code) => { if (code === 0) resolve(); else reject(new Error(`docker run exited with ${code}`)) })
    child.stdin.write(`{"id":1,"ms":5000,"in":"${REQUEST.toString('base64')}"}\n`)
  })
  return performance.now() - started
}

async function until (check: () => Promise<boolean>): Promise<void> {
  for (let i = 0; i < 200 && !(await check()); i++) await new Promise(resolve => setTimeout(resolve, 25))
}

export async function containerBench (print: Print): Promise<void> {
  let docker: Docker
  try {
    docker = await connectDocker()
  } catch (err) {
    process.stdout.write(`\ncontainer bench skipped: ${(err as Error).message}\n`)
    return
  }
  const dir = mkdtempSync(join(tmpdir(), 'edge-bench-fn-'))
  chmodSync(dir, 0o755)
  writeFileSync(join(dir, 'index.js'), ECHO_JS, { mode: 0o644 })
  // Containers made here are labelled as an owner of their own, and removed by it at the end.
  const benchOwner = `bench-${process.pid}`
  const image = await new DockerRuntime({ docker, owner: benchOwner, dir: join(dir, 'x') }).image('node')
  let net: Testnet | undefined
  try {
    // Bare dockerode: create + attach + start + first call, then removed before the next.
    const bare: number[] = []
    for (let i = 0; i < COLD_RUNS; i++) {
      const c = new RawContainer()
      const t = performance.now()
      await c.start(docker, image, dir, benchOwner)
      await c.call()
      bare.push(performance.now() - t)
      await c.remove()
    }
    const run: number[] = []
    for (let i = 0; i < Math.min(COLD_RUNS, 5); i++) run.push(await dockerRun(image, dir))

    net = await up({ peers: 1, agentArgs: () => ['--docker-slots', '4', '--keepalive', '5m'] })
    const agent = net.client(1)
    const owner = net.agent(1).peerId
    const ours = async (): Promise<number> => (await docker.listContainers({ all: true, filters: { label: [`${OWNER_LABEL}=${owner}`] } })).length
    await agent.deploy('cold', Buffer.from(await packEcho(dir)), { runtime: 'node', container: { singleUse: true } })
    const cold: number[] = []
    const init: number[] = []
    for (let i = 0; i < COLD_RUNS; i++) {
      const t = performance.now()
      const r = await agent.invoke('cold', { input: REQUEST, policy: 'local' })
      cold.push(performance.now() - t)
      init.push(r.timings.initMs ?? NaN)
      await until(async () => await ours() === 0)
    }

    // The first call on a prewarmed container: a new version each time, so that each call is a first.
    const prewarmed: number[] = []
    for (let i = 0; i < Math.min(COLD_RUNS, 5); i++) {
      await agent.deploy('prewarmed', Buffer.from(await packEcho(dir)), { runtime: 'node', env: { RUN: String(i) } })
      await agent.prewarm('prewarmed', 1)
      const t = performance.now()
      const r = await agent.invoke('prewarmed', { input: REQUEST, policy: 'local' })
      prewarmed.push(performance.now() - t)
      if (!r.warm) throw new Error('a prewarmed call ran cold')
    }

    // Warm round trips: raw stdio to one container, the runtime in-process, the agent over HTTP.
    const raw = new RawContainer()
    await raw.start(docker, image, dir, benchOwner)
    const rawWarm = await sequential(async () => { await raw.call() })
    // An owner of its own: starting, a runtime removes every container of its owner.
    const rt = new DockerRuntime({ docker, owner: `${benchOwner}-rt`, dir: join(dir, 'rt') })
    await rt.start()
    const { spec, code } = await echoSpec(dir)
    await rt.prepare(spec, code)
    const inProcess = await sequential(async () => { await rt.invoke(spec, REQUEST) })
    await rt.stop()
    await agent.deploy('warm', Buffer.from(await packEcho(dir)), { runtime: 'node', container: { maxContainers: 4 } })
    await agent.prewarm('warm', 4)
    const viaAgent = await sequential(async () => { await agent.invoke('warm', { input: REQUEST, policy: 'local' }) })
    const viaWrk = await measureWrk(`${net.agent(1).api}/v1/functions/warm/invoke`, { input: REQUEST.toString('base64'), policy: 'local' })

    // Throughput: 4 raw containers, one call in flight each, vs the agent with 4 warm containers and 16 clients.
    const raws = [raw, ...await Promise.all([1, 2, 3].map(async () => { const c = new RawContainer(); await c.start(docker, image, dir, benchOwner); return c }))]
    const rawRate = await throughput(4, async (k) => { await (raws[k % 4] as RawContainer).call() })
    await Promise.all(raws.map(async c => { await c.remove() }))
    const agentRate = viaWrk?.perSec ?? await throughput(16, async () => { await agent.invoke('warm', { input: REQUEST, policy: 'local' }) })

    const p50 = (xs: number[]): number => pct(sorted(xs), 0.5)
    print(`3. container cold start (node, ${COLD_RUNS} runs each, removed between runs)`, ['case', 'p50 ms', 'max ms', 'vs baseline'], [
      ['bare dockerode: create + attach + start + first call', f(p50(bare)), f(Math.max(...bare)), 'baseline'],
      ['through the agent (single-use function)', f(p50(cold)), f(Math.max(...cold)), `${(p50(cold) / p50(bare)).toFixed(2)}× (container start ${f(p50(init))} ms)`],
      ['docker run -i --rm (CLI, for reference)', f(p50(run)), f(Math.max(...run)), `${(p50(run) / p50(bare)).toFixed(2)}×`],
      ['first call on a prewarmed container, through the agent', f(p50(prewarmed)), f(Math.max(...prewarmed)), 'target < 5 ms']
    ])
    print(`4. warm container invoke (node echo, ${WARM_CALLS} sequential calls)`, ['case', 'p50 ms', 'p99 ms', 'vs baseline'], [
      ['raw: one request line over the attach stream', f(rawWarm.p50), f(rawWarm.p99), 'baseline'],
      ['Docker runtime in-process', f(inProcess.p50), f(inProcess.p99), `+${f(inProcess.p50 - rawWarm.p50)} ms p50`],
      ['through the agent (HTTP API, Node client)', f(viaAgent.p50), f(viaAgent.p99), `+${f(viaAgent.p50 - rawWarm.p50)} ms p50`],
      ...(viaWrk !== undefined ? [['through the agent (HTTP API, wrk)', f(viaWrk.p50), f(viaWrk.p99), `+${f(viaWrk.p50 - rawWarm.p50)} ms p50`]] : [])
    ])
    print('5. throughput with 4 warm containers', ['case', 'inv/s', 'vs baseline'], [
      ['raw: 4 containers, one call in flight each', rawRate.toFixed(0), 'baseline'],
      [`through the agent, 16 concurrent clients (${viaWrk !== undefined ? 'wrk' : 'Node client'})`, agentRate.toFixed(0), `${(agentRate / rawRate).toFixed(2)}×`]
    ])
    const warmAdds = (viaWrk ?? viaAgent).p50 - rawWarm.p50
    process.stdout.write(`\ntargets: cold start ≤ 1.1× bare dockerode (${(p50(cold) / p50(bare)).toFixed(2)}×); prewarmed first call < 5 ms (${f(p50(prewarmed))}); warm adds < 1.5 ms p50 (+${f(warmAdds)}, ${viaWrk !== undefined ? 'wrk' : 'Node client'})\n`)
  } finally {
    await net?.down()
    for (const c of await docker.listContainers({ all: true, filters: { label: [`${OWNER_LABEL}=${benchOwner}`] } })) await docker.getContainer(c.Id).remove({ force: true })
    rmSync(dir, { recursive: true, force: true })
  }
}

async function packEcho (dir: string): Promise<Uint8Array> {
  return await packFunction(join(dir, 'index.js'))
}

function echoSpecFor (code: Uint8Array): FunctionSpec {
  return { name: 'echo', version: 1, runtime: 'node', entry: 'index.js', sha256: createHash('sha256').update(code).digest('hex'), size: Math.max(1, code.byteLength), memoryBytes: 128 << 20, timeoutMs: 5000, deployedAt: 1 }
}

async function echoSpec (dir: string): Promise<{ spec: FunctionSpec, code: Uint8Array }> {
  const code = await packEcho(dir)
  return { code, spec: echoSpecFor(code) }
}

async function sequential (call: () => Promise<void>): Promise<{ p50: number, p99: number }> {
  for (let i = 0; i < 100; i++) await call()
  const samples: number[] = []
  for (let i = 0; i < WARM_CALLS; i++) {
    const t = performance.now()
    await call()
    samples.push(performance.now() - t)
  }
  const ordered = sorted(samples)
  return { p50: pct(ordered, 0.5), p99: pct(ordered, 0.99) }
}

async function throughput (concurrency: number, call: (k: number) => Promise<void>): Promise<number> {
  let next = 0
  const started = performance.now()
  await Promise.all(Array.from({ length: concurrency }, async (_, k) => {
    while (next++ < THROUGHPUT_CALLS) await call(k)
  }))
  return THROUGHPUT_CALLS / ((performance.now() - started) / 1000)
}
