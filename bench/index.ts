import '../agent/polyfill.js'
import { readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { WASI } from 'node:wasi'
import { up } from '../testnet/index.js'
import { AgentClient } from '../cli/client.js'
import { WasmRuntime } from '../runtimes/index.js'
import { dhtBench } from './dht.js'
import { containerBench } from './containers.js'
import { overloadBench } from './overload.js'
import { scaleBench } from './scale.js'
import { abuseBench } from './abuse.js'
import { cliBench } from './cli.js'
import { measureWrk, type Figures } from './wrk.js'
import { createHash } from 'node:crypto'
import { pct } from './stats.js'

/**
 * npm run bench — figures against baselines measured in the same run:
 *  1. local warm WASM invoke through the agent (HTTP API → scheduler → worker) vs the same module
 *     called directly in-process (instantiate + run, no agent);
 *  2. remote invoke over /edge/invoke/1 (agent 2 → agent 1) vs the local invoke on agent 1.
 * Targets (issue 3): local overhead < 1 ms p50 and ≥ 5k inv/s; remote adds < 3 ms p50 on loopback.
 *
 * Calls through the agent are driven twice: by a Node HTTP client in this process (what a Node
 * program calling the API sees, its own cost included) and, when installed, by wrk (a C load
 * generator: `apt-get install wrk`), whose small cost leaves the 2 cores to the agent.
 */

const ROOT = fileURLToPath(new URL('../../', import.meta.url))
const ECHO = readFileSync(`${ROOT}examples/echo/echo.wasm`)
const SEQ = Number(process.env.BENCH_SEQ ?? 2000)
const THROUGHPUT_CALLS = Number(process.env.BENCH_CALLS ?? 6000)
const CONCURRENCY = Number(process.env.BENCH_CONCURRENCY ?? 16)
const INPUT = Buffer.from('{"hello":"edge"}')


async function measure (call: () => Promise<unknown>): Promise<Figures> {
  for (let i = 0; i < 1000; i++) await call()
  const samples: number[] = []
  for (let i = 0; i < SEQ; i++) {
    const t = performance.now()
    await call()
    samples.push(performance.now() - t)
  }
  samples.sort((a, b) => a - b)
  let next = 0
  const started = performance.now()
  await Promise.all(Array.from({ length: CONCURRENCY }, async () => {
    while (next++ < THROUGHPUT_CALLS) await call()
  }))
  const perSec = THROUGHPUT_CALLS / ((performance.now() - started) / 1000)
  return { p50: pct(samples, 0.5), p99: pct(samples, 0.99), perSec }
}

function directCall (): () => Promise<Uint8Array> {
  const module = new WebAssembly.Module(ECHO)
  return async () => {
    let out = new Uint8Array(0)
    let memory: WebAssembly.Memory | undefined
    let read = false
    const wasi = new WASI({ version: 'preview1', returnOnExit: true })
    const real = wasi.wasiImport as Record<string, (...a: number[]) => number>
    const imports: Record<string, (...a: number[]) => number> = {}
    for (const name of Object.keys(real)) imports[name] = (...a: number[]) => real[name]!(...a)
    imports.fd_read = (fd, iovs, _n, nread) => {
      const view = new DataView(memory!.buffer)
      let n = 0
      if (fd === 0 && !read) {
        const ptr = view.getUint32(iovs, true)
        new Uint8Array(memory!.buffer).set(INPUT, ptr)
        n = INPUT.length
        read = true
      }
      view.setUint32(nread, n, true)
      return 0
    }
    imports.fd_write = (_fd, iovs, n, nwritten) => {
      const view = new DataView(memory!.buffer)
      let total = 0
      for (let i = 0; i < n; i++) {
        const ptr = view.getUint32(iovs + i * 8, true)
        const len = view.getUint32(iovs + i * 8 + 4, true)
        out = new Uint8Array(memory!.buffer, ptr, len).slice()
        total += len
      }
      view.setUint32(nwritten, total, true)
      return 0
    }
    const instance = new WebAssembly.Instance(module, { wasi_snapshot_preview1: imports })
    memory = instance.exports.memory as WebAssembly.Memory
    wasi.start(instance)
    return out
  }
}

/** p50/p99 from wrk with one connection, inv/s from wrk with CONCURRENCY connections; undefined without wrk. */
function row (name: string, f: Figures, base?: Figures): string[] {
  const ratio = base === undefined ? 'baseline' : `p50 ${(f.p50 / base.p50).toFixed(2)}×, +${(f.p50 - base.p50).toFixed(3)} ms; ${(f.perSec / base.perSec).toFixed(2)}× inv/s`
  return [name, f.p50.toFixed(3), f.p99.toFixed(3), f.perSec.toFixed(0), ratio]
}

function print (title: string, rows: string[][]): void {
  const headers = ['case', 'p50 ms', 'p99 ms', 'inv/s', 'vs baseline']
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map(r => (r[i] ?? '').length)))
  const line = (cells: string[]): string => cells.map((c, i) => i > 0 && i < 4 ? c.padStart(widths[i] ?? 0) : c.padEnd(widths[i] ?? 0)).join('  ')
  process.stdout.write(`\n${title}\n${line(headers)}\n${widths.map(w => '-'.repeat(w)).join('  ')}\n${rows.map(line).join('\n')}\n`)
}

function printTable (title: string, headers: string[], rows: string[][]): void {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map(r => (r[i] ?? '').length)))
  const line = (cells: string[]): string => cells.map((c, i) => c.padEnd(widths[i] ?? 0)).join('  ')
  process.stdout.write(`\n${title}\n${line(headers)}\n${widths.map(w => '-'.repeat(w)).join('  ')}\n${rows.map(line).join('\n')}\n`)
}

async function main (): Promise<void> {
  // BENCH_ONLY=containers (dht, overload, scale, abuse, cli) runs one part.
  if (process.env.BENCH_ONLY === 'containers') { await containerBench(printTable); return }
  if (process.env.BENCH_ONLY === 'dht') { await dhtBench(printTable); return }
  if (process.env.BENCH_ONLY === 'overload') { await overloadBench(printTable); return }
  if (process.env.BENCH_ONLY === 'scale') { await scaleBench(printTable); return }
  if (process.env.BENCH_ONLY === 'abuse') { await abuseBench(printTable); return }
  if (process.env.BENCH_ONLY === 'cli') { await cliBench(printTable); return }
  process.stdout.write(`edge-agent bench: node ${process.version}, ${SEQ} sequential calls then ${THROUGHPUT_CALLS} at concurrency ${CONCURRENCY}\n`)
  const direct = await measure(directCall())

  const rt = new WasmRuntime({ slots: 2 })
  await rt.start()
  const spec = { name: 'echo', version: 1, runtime: 'wasm' as const, sha256: createHash('sha256').update(ECHO).digest('hex'), size: ECHO.length, memoryBytes: 64 << 20, timeoutMs: 5000, deployedAt: 1 }
  await rt.prepare(spec, ECHO)
  const pool = await measure(async () => await rt.invoke(spec, INPUT))
  await rt.stop()

  const net = await up({ peers: 2, agentArgs: () => ['--wasm-slots', process.env.BENCH_SLOTS ?? '2'] })
  try {
    const a1 = net.client(1)
    const a2 = net.client(2)
    await a1.deploy('echo', ECHO)
    const check = await a2.invoke('echo', { input: INPUT, peer: net.agent(1).peerId })
    if (Buffer.from(check.outputBytes).toString() !== INPUT.toString()) throw new Error('bench sanity check failed')
    const local = await measure(async () => await a1.invoke('echo', { input: INPUT, policy: 'local' }))
    const remote = await measure(async () => await a2.invoke('echo', { input: INPUT, peer: net.agent(1).peerId }))
    const input = INPUT.toString('base64')
    const localWrk = await measureWrk(`${net.agent(1).api}/v1/functions/echo/invoke`, { input, policy: 'local' })
    const remoteWrk = await measureWrk(`${net.agent(2).api}/v1/functions/echo/invoke`, { input, peer: net.agent(1).peerId })
    print('1. local warm WASM invoke (echo, 16 B)', [
      row('direct: instantiate + run in-process', direct),
      row('runtime pool in-process (worker threads)', pool, direct),
      row('through the agent, Node client', local, direct),
      ...(localWrk !== undefined ? [row('through the agent, wrk', localWrk, direct)] : [])
    ])
    print('2. remote invoke over /edge/invoke/1 (agent 2 → agent 1) vs local on agent 1', [
      row('local on agent 1, Node client', local),
      row('remote: agent 2 → agent 1, Node client', remote, local),
      ...(localWrk !== undefined && remoteWrk !== undefined ? [row('local on agent 1, wrk', localWrk), row('remote: agent 2 → agent 1, wrk', remoteWrk, localWrk)] : [])
    ])
    const best = localWrk ?? local
    const bestRemote = remoteWrk ?? remote
    process.stdout.write('\ntargets: agent overhead < 1 ms p50 over direct; >= 5000 inv/s through the agent; remote adds < 3 ms p50 over local\n')
    process.stdout.write(`results (${localWrk !== undefined ? 'wrk' : 'Node client; install wrk for figures without the client\'s own cost'}): agent overhead +${(best.p50 - direct.p50).toFixed(3)} ms p50; ${best.perSec.toFixed(0)} inv/s; remote adds +${(bestRemote.p50 - best.p50).toFixed(3)} ms p50\n`)
  } finally {
    await net.down()
  }
  if (process.env.BENCH_SKIP_DHT === undefined) await dhtBench(printTable)
  if (process.env.BENCH_SKIP_CONTAINERS === undefined) await containerBench(printTable)
  if (process.env.BENCH_SKIP_OVERLOAD === undefined) await overloadBench(printTable)
  if (process.env.BENCH_SKIP_SCALE === undefined) await scaleBench(printTable)
  if (process.env.BENCH_SKIP_ABUSE === undefined) await abuseBench(printTable)
  if (process.env.BENCH_SKIP_CLI === undefined) await cliBench(printTable)
}

await main()
