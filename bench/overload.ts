import { readFileSync } from 'node:fs'
import { Agent as HttpAgent, request } from 'node:http'
import { createHash } from 'node:crypto'
import { fileURLToPath } from 'node:url'
import { up, findCgroupRoots, type Testnet } from '../testnet/index.js'
import { WasmRuntime } from '../runtimes/index.js'
import { PeerTable } from '../agent/swarm/peer-table.js'
import { peerViews } from '../agent/calls/scheduler.js'
import { POLICIES, type CandidateView } from '../agent/calls/policies/index.js'
import { WIRE_VERSION, type Advert } from '../protocol/index.js'
import { pct, sorted } from './stats.js'

/**
 * Issue 10's figures: a swarm absorbing more than one device's load. Five agents, each capped at
 * CPU_CAP of a core (cgroups) with one WASM slot, run a CPU-bound call of ~25 ms (of an uncapped
 * core). One agent's capacity is measured first (calls back to back); then open-loop load — calls
 * fired on a timer, never waiting for answers — at 0.5× to 4× that capacity, (a) all sent to agent
 * 1, (b) spread over the five APIs, under every policy. The unloaded p99 of the same run is the
 * baseline. Then the scheduler's decision (views + ranking over 50 peers) in a micro-bench.
 */

const ROOT = fileURLToPath(new URL('../../', import.meta.url))
const PRIMES = readFileSync(`${ROOT}examples/primes/primes.wasm`)
const AGENTS = 5
const CPU_CAP = Number(process.env.BENCH_CPU ?? 0.3)
const SECONDS = Number(process.env.BENCH_OVERLOAD_SECONDS ?? 6)
const LOADS = (process.env.BENCH_LOADS ?? '0.5,1,2,3,4').split(',').map(Number)
const POLICY_NAMES = (process.env.BENCH_POLICIES ?? 'local-first,near,least-loaded,p2c,warm-affinity,weighted').split(',')
const MODES = (process.env.BENCH_MODES ?? 'agent1,spread').split(',') as Array<'agent1' | 'spread'>
/** Each call's deadline: a call refused is one that no place could finish by then. */
const DEADLINE_MS = Number(process.env.BENCH_DEADLINE_MS ?? 3000)
const TARGET_RUN_MS = 25

type PrintTable = (title: string, headers: string[], rows: string[][]) => void

interface Shot { ms: number, status: number, ranOn?: string, code?: string, busy: number }

const http = new HttpAgent({ keepAlive: true, maxSockets: 512 })

async function call (api: string, body: Record<string, unknown>): Promise<Shot> {
  const started = performance.now()
  return await new Promise((resolve) => {
    const req = request(`${api}/v1/functions/primes/invoke`, { method: 'POST', agent: http, headers: { 'content-type': 'application/json' } }, (res) => {
      let text = ''
      res.setEncoding('utf8')
      res.on('data', (d: string) => { text += d })
      res.on('end', () => {
        const ms = performance.now() - started
        try {
          const j = JSON.parse(text) as { ranOn?: string, attempts?: Array<{ outcome: string }>, error?: { code?: string, attempts?: Array<{ outcome: string }> } }
          const busy = (j.attempts ?? j.error?.attempts ?? []).filter(a => a.outcome === 'busy').length
          resolve({ ms, status: res.statusCode ?? 0, busy, ...(j.ranOn !== undefined ? { ranOn: j.ranOn } : {}), ...(j.error?.code !== undefined ? { code: j.error.code } : {}) })
        } catch {
          resolve({ ms, status: res.statusCode ?? 0, code: 'BAD_ANSWER', busy: 0 })
        }
      })
    })
    req.on('error', (err) => { resolve({ ms: performance.now() - started, status: 0, code: err.message, busy: 0 }) })
    req.end(JSON.stringify(body))
  })
}

/** n for which one primes call runs ~TARGET_RUN_MS on an uncapped core. */
async function calibrateN (): Promise<{ n: number, runMs: number }> {
  const rt = new WasmRuntime({ slots: 1 })
  await rt.start()
  const spec = { name: 'primes', version: 1, runtime: 'wasm' as const, sha256: createHash('sha256').update(PRIMES).digest('hex'), size: PRIMES.length, memoryBytes: 64 << 20, timeoutMs: 10_000, deployedAt: 1 }
  await rt.prepare(spec, PRIMES)
  const run = async (n: number): Promise<number> => {
    const ms: number[] = []
    for (let i = 0; i < 7; i++) ms.push((await rt.invoke(spec, Buffer.from(JSON.stringify({ n })))).runMs)
    return pct(sorted(ms), 0.5)
  }
  let n = 1_000_000
  let ms = await run(n)
  for (let i = 0; i < 6 && Math.abs(ms - TARGET_RUN_MS) > 2; i++) {
    n = Math.max(10_000, Math.min(40_000_000, Math.round(n * TARGET_RUN_MS / Math.max(0.5, ms))))
    ms = await run(n)
  }
  await rt.stop()
  return { n, runMs: ms }
}

/** Fires `rate` calls per second for SECONDS at the APIs `pick` chooses, on a timer. */
async function openLoop (rate: number, pick: (i: number) => string, body: Record<string, unknown>): Promise<Shot[]> {
  const total = Math.max(1, Math.round(rate * SECONDS))
  const shots: Array<Promise<Shot>> = []
  const started = performance.now()
  for (let i = 0; i < total; i++) {
    const due = started + (i * 1000) / rate
    const wait = due - performance.now()
    if (wait > 1) await new Promise(resolve => setTimeout(resolve, wait))
    shots.push(call(pick(i), body))
  }
  return await Promise.all(shots)
}

async function settle (net: Testnet): Promise<void> {
  const until = Date.now() + 30_000
  while (Date.now() < until) {
    let busy = 0
    for (const a of net.agents) {
      const s = await net.client(a.index).status()
      busy += s.runtimes.find(r => r.kind === 'wasm')?.busy ?? 0
    }
    if (busy === 0) return
    await new Promise(resolve => setTimeout(resolve, 200))
  }
}

/** The scheduler's decision over 50 peers (views from the peer table + the policy's ranking), µs per call. */
function decisionMicroBench (): Array<[string, number]> {
  const table = new PeerTable({ expiryMs: 60_000 })
  const holders = new Set<string>()
  for (let i = 0; i < 50; i++) {
    const peerId = `peer-${i}`
    const advert: Advert = {
      v: WIRE_VERSION, type: 'advert', peerId, addrs: [], arch: 'x64', platform: 'linux', cpus: 4, memTotal: 1, memFree: 1,
      runtimes: [{ kind: 'wasm', slots: 4, busy: i % 5 }], queue: i % 3, labels: {}, warm: i % 2 === 0 ? ['f'.repeat(64)] : [], functions: [], seq: 1, sentAt: Date.now()
    }
    table.upsert(advert)
    table.recordRtt(peerId, 0.2 + (i % 10))
    if (i % 4 === 0) table.callStarted(peerId, 'wasm')
    if (i % 3 === 0) holders.add(peerId)
  }
  const self: CandidateView = { peerId: 'self', local: true, rttMs: 0, freeSlots: 0, slots: 4, holds: true, warm: true, queue: 2, inFlight: 4, waitMs: 40, runMs: 25, fetchMs: 0 }
  const out: Array<[string, number]> = []
  for (const name of POLICY_NAMES) {
    const policy = POLICIES[name]
    if (policy === undefined) continue
    const decide = (): unknown => policy.rank({ self, peers: peerViews(table, { sha256: 'f'.repeat(64), kind: 'wasm', holders, runMs: 25, fetchMs: 30 }), deadlineMs: 3000 })
    for (let i = 0; i < 2000; i++) decide()
    const samples: number[] = []
    for (let r = 0; r < 20; r++) {
      const t = performance.now()
      for (let i = 0; i < 500; i++) decide()
      samples.push((performance.now() - t) * 1000 / 500)
    }
    out.push([name, pct(sorted(samples), 0.5)])
  }
  return out
}

interface Swarm { net: Testnet, n: number, unloadedP99: number, capacity: number }

/** Five capped agents holding the compiled function, with one agent's capacity and unloaded latency measured. */
async function swarm (n: number, label: string): Promise<Swarm> {
  const net = await up({ peers: AGENTS, cpu: () => CPU_CAP, agentArgs: () => ['--wasm-slots', '1', '--no-docker'], readyTimeoutMs: 120_000 })
  try {
    const a1 = net.client(1)
    const body = { params: { n }, timeoutMs: DEADLINE_MS, policy: 'local' }
    await a1.deploy('primes', PRIMES, { timeout: '10s' })
    // Every agent holds and has compiled the code before anything is measured.
    for (const a of net.agents) await net.client(a.index).invoke('primes', { params: { n: 10 }, policy: 'local', timeoutMs: 30_000 })
    // Capacity: calls back to back on agent 1, here — what its CPU share gets through per second.
    const started = performance.now()
    const BACK_TO_BACK = 30
    for (let i = 0; i < BACK_TO_BACK; i++) await call(net.agent(1).api, body)
    const capacity = BACK_TO_BACK * 1000 / (performance.now() - started)
    // Unloaded latency: one call at a time, with pauses that leave the CPU share unspent, as a call
    // to an idle device sees it.
    const unloaded: number[] = []
    for (let i = 0; i < 30; i++) {
      await new Promise(resolve => setTimeout(resolve, 250))
      const s = await call(net.agent(1).api, body)
      if (s.status === 200) unloaded.push(s.ms)
    }
    const u = sorted(unloaded)
    process.stdout.write(`${label}: agent 1 capacity ~${capacity.toFixed(1)} calls/s (back to back); unloaded p50 ${pct(u, 0.5).toFixed(1)} ms, p99 ${pct(u, 0.99).toFixed(1)} ms (one call at a time, spaced)\n`)
    return { net, n, unloadedP99: pct(u, 0.99), capacity }
  } catch (err) {
    await net.down()
    throw err
  }
}

/** One case of open-loop load: the table row (see the headers below). */
async function runCase (s: Swarm, policy: string, mode: 'agent1' | 'spread', load: number): Promise<string[]> {
  const { net } = s
  await settle(net)
  const index = new Map(net.agents.map(a => [a.peerId, a.index]))
  const apis = net.agents.map(a => a.api)
  const shots = await openLoop(load * s.capacity, mode === 'agent1' ? () => apis[0] as string : (i) => apis[i % apis.length] as string, { params: { n: s.n }, timeoutMs: DEADLINE_MS, policy })
  const ok = sorted(shots.filter(x => x.status === 200).map(x => x.ms))
  const refused = new Map<string, number>()
  for (const x of shots) if (x.status !== 200) refused.set(x.code ?? String(x.status), (refused.get(x.code ?? String(x.status)) ?? 0) + 1)
  const share = Array.from({ length: AGENTS }, (_, k) => shots.filter(x => x.ranOn !== undefined && index.get(x.ranOn) === k + 1).length)
  const p99 = pct(ok, 0.99)
  return [
    mode === 'agent1' ? 'to agent 1' : 'spread',
    `${load}×`,
    String(shots.length),
    `${(100 * ok.length / shots.length).toFixed(1)}%`,
    refused.size === 0 ? '-' : [...refused].map(([c, k]) => `${c} ${k}`).join(', '),
    String(shots.reduce((k, x) => k + x.busy, 0)),
    pct(ok, 0.5).toFixed(0),
    pct(ok, 0.95).toFixed(0),
    p99.toFixed(0),
    share.map(x => `${Math.round(100 * x / Math.max(1, ok.length))}`).join('/'),
    `${(p99 / s.unloadedP99).toFixed(2)}×`
  ]
}

const HEADERS = ['load sent', 'rate', 'sent', 'completed', 'refused', 'BUSY answers', 'p50 ms', 'p95 ms', 'p99 ms', 'share a1/a2/a3/a4/a5 %', 'p99 vs unloaded']
/** Where fresh load in answers should matter most: many callers, each seeing the others only through adverts. */
const PIGGYBACK_CASES: Array<[string, 'agent1' | 'spread', number]> = [['least-loaded', 'spread', 3], ['least-loaded', 'spread', 4], ['p2c', 'spread', 4]]

export async function overloadBench (printTable: PrintTable): Promise<void> {
  process.stdout.write(`\n== overload: ${AGENTS} agents at ${CPU_CAP} CPU each, 1 WASM slot, open-loop load for ${SECONDS} s per case, deadline ${DEADLINE_MS} ms ==\n`)
  const micro = decisionMicroBench()
  printTable('scheduler decision over 50 peers (views from the peer table + ranking), target < 50 µs', ['policy', 'µs per decision'], micro.map(([name, us]) => [name, us.toFixed(1)]))
  try {
    findCgroupRoots(['cpu'])
  } catch (err) {
    process.stdout.write(`overload bench skipped: ${(err as Error).message}\n`)
    return
  }
  const { n, runMs } = await calibrateN()
  process.stdout.write(`calibrated: primes n=${n} runs ${runMs.toFixed(1)} ms on an uncapped core\n`)
  const summary: string[][] = []
  const withLoad = new Map<string, string[]>()
  const s = await swarm(n, 'swarm')
  try {
    for (const policy of POLICY_NAMES) {
      const rows: string[][] = []
      for (const mode of MODES) {
        for (const load of LOADS) {
          const row = await runCase(s, policy, mode, load)
          rows.push(row)
          withLoad.set(`${policy} ${mode} ${load}`, row)
          if (mode === 'agent1' && load === 3) summary.push([policy, row[3] as string, row[10] as string])
        }
      }
      printTable(`policy ${policy}`, HEADERS, rows)
    }
  } finally {
    await s.net.down()
  }
  printTable('3× one agent\'s capacity sent to agent 1 (targets: ≥ 99 % completed, p99 ≤ 3× unloaded p99, with local-first)', ['policy', 'completed', 'p99 vs unloaded p99'], summary)
  if (process.env.BENCH_PIGGYBACK !== '0') await piggyback(n, withLoad, printTable)
  http.destroy()
}

async function piggyback (n: number, withLoad: Map<string, string[]>, printTable: PrintTable): Promise<void> {
  // The same cases on a swarm whose agents ignore the load in answers: adverts (1 s) alone.
  process.env.EDGE_IGNORE_ANSWER_LOAD = '1'
  let b: Swarm
  try {
    b = await swarm(n, 'swarm ignoring the load in answers')
  } finally {
    delete process.env.EDGE_IGNORE_ANSWER_LOAD
  }
  try {
    const rows: string[][] = []
    for (const [policy, mode, load] of PIGGYBACK_CASES) {
      const on = withLoad.get(`${policy} ${mode} ${load}`)
      if (on === undefined) continue
      const off = await runCase(b, policy, mode, load)
      rows.push([policy, ...on.slice(0, 2), 'answers + adverts', ...on.slice(3)], [policy, ...off.slice(0, 2), 'adverts only', ...off.slice(3)])
    }
    printTable('what the load in answers is worth (same cases; the second swarm ignores it)', ['policy', 'load sent', 'rate', 'view', ...HEADERS.slice(3)], rows)
  } finally {
    await b.net.down()
  }
}
