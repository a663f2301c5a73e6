import { spawnSync } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { up } from '../testnet/index.js'
import { pct } from './stats.js'

/**
 * How fast each CLI starts (issue 13: every `edge` command and `edge-agent --help` within 1.5× of
 * `node -e 0`): wall time of a whole process, median and p90 of RUNS runs each, against `node -e 0`
 * measured in the same run, interleaved so that the machine's drift hits all alike. `edge status`
 * and `edge list` talk to a real agent.
 */
const RUNS = Number(process.env.BENCH_CLI_RUNS ?? 30)
const EDGE = fileURLToPath(new URL('../cli/edge.js', import.meta.url))
const EDGE_AGENT = fileURLToPath(new URL('../cli/edge-agent.js', import.meta.url))

function wallMs (args: string[], env: NodeJS.ProcessEnv): number {
  const t = process.hrtime.bigint()
  const r = spawnSync(process.execPath, args, { stdio: 'ignore', env })
  if (r.status !== 0) throw new Error(`node ${args.join(' ')} exited ${String(r.status)}`)
  return Number(process.hrtime.bigint() - t) / 1e6
}

export async function cliBench (printTable: (title: string, headers: string[], rows: string[][]) => void): Promise<void> {
  const net = await up({ peers: 1 })
  try {
    const api = net.agent(1).api
    // `edge testnet status` and `--node` find this testnet by its home.
    const env = { ...process.env, EDGE_TESTNET_HOME: net.state.dir }
    const cases: Array<[string, string[]]> = [
      ['node -e 0 (baseline)', ['-e', '0']],
      ['edge --help', [EDGE, '--help']],
      ['edge --version', [EDGE, '--version']],
      ['edge status (a running agent)', [EDGE, '--agent', api, 'status']],
      ['edge list (a running agent)', [EDGE, '--agent', api, 'list']],
      ['edge testnet status', [EDGE, 'testnet', 'status']],
      ['edge --node 1 status', [EDGE, '--node', '1', 'status']],
      ['edge-agent --help', [EDGE_AGENT, '--help']],
      ['edge-agent --version', [EDGE_AGENT, '--version']]
    ]
    const times = cases.map((): number[] => [])
    for (const [, args] of cases) wallMs(args, env) // warm the page cache
    for (let i = 0; i < RUNS; i++) cases.forEach(([, args], k) => { times[k]?.push(wallMs(args, env)) })
    const sorted = times.map(t => [...t].sort((a, b) => a - b))
    const base = pct(sorted[0] ?? [], 0.5)
    printTable(`CLI start-up: wall time of a whole process, ${RUNS} runs each (target: every command ≤ 1.5× node -e 0)`,
      ['command', 'p50 ms', 'p90 ms', 'p50 vs node -e 0'],
      cases.map(([label], k) => [label, pct(sorted[k] ?? [], 0.5).toFixed(1), pct(sorted[k] ?? [], 0.9).toFixed(1), `${(pct(sorted[k] ?? [], 0.5) / base).toFixed(2)}×`]))
  } finally {
    await net.down()
  }
}
