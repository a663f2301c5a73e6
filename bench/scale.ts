import { readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { up, type Testnet } from '../testnet/index.js'
import { memMiB, pct, sorted } from './stats.js'

/**
 * Issue 11's figures: testnets of 10, 25 and 50 agents on this machine against one agent alone,
 * in the same run — time to converge, idle CPU and RSS per agent over IDLE_SAMPLE_S after
 * IDLE_WAIT_S of quiet, advert ages, deploy-to-invocable-everywhere, DHT manifest look-ups.
 * Targets: 50 converge in < 60 s; the idle swarm of 50 < 50 % of one core in total; a deploy reaches
 * all 50 in < 5 s.
 */

const ROOT = fileURLToPath(new URL('../../', import.meta.url))
const ECHO = readFileSync(`${ROOT}examples/echo/echo.wasm`)
const SIZES = (process.env.BENCH_SCALE_SIZES ?? '1,10,25,50').split(',').map(Number)
const IDLE_WAIT_S = Number(process.env.BENCH_SCALE_IDLE_WAIT_S ?? 60)
const IDLE_SAMPLE_S = Number(process.env.BENCH_SCALE_IDLE_SAMPLE_S ?? 20)
const TICKS = 100 // USER_HZ

type PrintTable = (title: string, headers: string[], rows: string[][]) => void

/** CPU seconds (user + system) a process has used, from /proc. */
function cpuSeconds (pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  return (Number(fields[11]) + Number(fields[12])) / TICKS
}

async function sleep (ms: number): Promise<void> {
  await new Promise(resolve => setTimeout(resolve, ms))
}

interface Figures {
  n: number
  convergeS: number
  cpuMedian: number
  cpuMax: number
  cpuTotal: number
  rssMedian: number
  rssMax: number
  anonMedian: number
  advertAgeP50: number
  advertAgeP99: number
  deployS: number
  dhtP50: number
  dhtP99: number
  leaves: number
  connMedian: number
  connMax: number
}

async function measure (n: number): Promise<Figures> {
  const started = performance.now()
  const net: Testnet = await up({ peers: n, agentArgs: () => ['--wasm-slots', '1', '--no-docker'], stallMs: 30_000 })
  const convergeS = (performance.now() - started) / 1000
  try {
    await sleep(IDLE_WAIT_S * 1000)
    const pids = net.agents.map(a => a.pid)
    const c0 = pids.map(cpuSeconds)
    const t0 = performance.now()
    await sleep(IDLE_SAMPLE_S * 1000)
    const elapsed = (performance.now() - t0) / 1000
    const cpu = sorted(pids.map((pid, i) => 100 * (cpuSeconds(pid) - (c0[i] as number)) / elapsed))
    const mem = pids.map(memMiB)
    const rss = sorted(mem.map(m => m.rss))
    const anon = sorted(mem.map(m => m.anon))
    const ages = sorted((await Promise.all(net.agents.map(async a => await net.client(a.index).peers()))).flat().map(p => p.advertAgeMs))
    const statuses = await Promise.all(net.agents.map(async a => await net.client(a.index).status()))
    const leaves = statuses.reduce((x, s) => x + s.peerEvents.left, 0)
    const conns = sorted(statuses.map(s => s.connections))
    // Deploy on agent 1; invocable everywhere once every agent has run it (wherever it placed the call).
    const d0 = performance.now()
    await net.client(1).deploy('echo', ECHO)
    await Promise.all(net.agents.map(async (a) => {
      for (;;) {
        const ok = await net.client(a.index).invoke('echo', { input: Buffer.from('x'), timeoutMs: 5000 }).then(() => true, () => false)
        if (ok) return
        if (performance.now() - d0 > 120_000) throw new Error(`agent ${a.index} could not invoke echo within 120 s of the deploy`)
        await sleep(50)
      }
    }))
    const deployS = (performance.now() - d0) / 1000
    // DHT manifest look-ups from every agent but the deployer (which keeps it locally).
    const lookups: number[] = []
    if (n > 1) {
      for (let i = 0; i < Math.max(30, n); i++) {
        const a = net.agents[1 + (i % (n - 1))]
        if (a === undefined) continue
        const t = performance.now()
        const m = await net.client(a.index).manifest('echo').catch(() => undefined)
        if (m?.source === 'dht') lookups.push(performance.now() - t)
      }
    }
    const l = sorted(lookups)
    return {
      n,
      convergeS,
      cpuMedian: pct(cpu, 0.5),
      cpuMax: cpu.at(-1) ?? NaN,
      cpuTotal: cpu.reduce((x, y) => x + y, 0),
      rssMedian: pct(rss, 0.5),
      rssMax: rss.at(-1) ?? NaN,
      anonMedian: pct(anon, 0.5),
      advertAgeP50: pct(ages, 0.5),
      advertAgeP99: pct(ages, 0.99),
      deployS,
      dhtP50: pct(l, 0.5),
      dhtP99: pct(l, 0.99),
      leaves,
      connMedian: pct(conns, 0.5),
      connMax: conns.at(-1) ?? NaN
    }
  } finally {
    await net.down()
  }
}

export async function scaleBench (printTable: PrintTable): Promise<void> {
  process.stdout.write(`\n== scale: testnets of ${SIZES.join(', ')} agents (1 WASM slot, no Docker); idle figures over ${IDLE_SAMPLE_S} s after ${IDLE_WAIT_S} s of quiet ==\n`)
  const rows: string[][] = []
  let base: Figures | undefined
  for (const n of SIZES) {
    let f: Figures
    try {
      f = await measure(n)
    } catch (err) {
      // A size that does not converge is a finding, not the end of the bench.
      rows.push([String(n), `failed: ${(err as Error).message.slice(0, 160)}`, '', '', '', '', '', '', '', '', ''])
      process.stdout.write(`  ${n} agents: ${(err as Error).message}\n`)
      continue
    }
    base ??= f
    const vs = (x: number, b: number): string => base === f || !Number.isFinite(b) || b === 0 ? '' : ` (${(x / b).toFixed(1)}×)`
    rows.push([
      String(n),
      f.convergeS.toFixed(1),
      `${f.connMedian.toFixed(0)} / ${f.connMax.toFixed(0)}`,
      `${f.cpuMedian.toFixed(2)} / ${f.cpuMax.toFixed(2)}${vs(f.cpuMedian, base.cpuMedian)}`,
      f.cpuTotal.toFixed(1),
      `${f.rssMedian.toFixed(0)} / ${f.rssMax.toFixed(0)}${vs(f.rssMedian, base.rssMedian)}`,
      f.anonMedian.toFixed(0),
      n > 1 ? `${(f.advertAgeP50 / 1000).toFixed(1)} / ${(f.advertAgeP99 / 1000).toFixed(1)}` : '-',
      String(f.leaves),
      f.deployS.toFixed(2),
      n > 1 ? `${f.dhtP50.toFixed(0)} / ${f.dhtP99.toFixed(0)}` : '-'
    ])
    process.stdout.write(`  ${n} agents: ${rows.at(-1)?.join(' | ') ?? ''}\n`)
  }
  printTable('idle cost and convergence by swarm size (baseline: the first size, alone)', [
    'agents', 'converge s', 'connections median / max', 'idle CPU % per agent median / max', 'idle CPU % all', 'RSS MiB median / max', 'of which private MiB median', 'advert age s p50 / p99', 'peer leaves', 'deploy → invocable everywhere s', 'DHT look-up ms p50 / p99'
  ], rows)
  process.stdout.write('targets: 50 agents converge in < 60 s; the idle swarm of 50 < 50 % of one core in total; a deploy is invocable on all 50 in < 5 s\n')
}
