import { GOSSIP } from '../../agent/swarm/tuning.js'
import { POLICIES } from '../../agent/calls/policies/index.js'
import { defaultDesigns, DESIGNS, type Design } from './designs.js'
import { runScenario, type Convergence, type Figures } from './scenario.js'
import { printTable } from './table.js'

/**
 * npm run simulate — issue 11 item 6: swarms of 1,000 and 10,000 agents in virtual time, running
 * the real AdvertService, PeerTable, peerViews and policies over a modelled gossipsub mesh with a
 * generated geographic latency model. One table per size, a row per advert design. Deterministic
 * for a seed. Knobs: SIM_SIZES, SIM_DESIGNS, SIM_SECONDS (least idle window), SIM_LOAD_SECONDS,
 * SIM_UNLOADED_SECONDS, SIM_OVERLOADED (callers), SIM_OBSERVERS and SIM_FULL_UP_TO (beyond that
 * size only SIM_OBSERVERS agents keep fed tables), SIM_CONNECTIONS, SIM_POLICY, SIM_DEADLINE_MS,
 * SIM_SEED, SIM_QUIET (no progress lines).
 */

const env = process.env
const SIZES = (env.SIM_SIZES ?? '1000,10000').split(',').map(Number)
const designsFor = (size: number): string[] => env.SIM_DESIGNS?.split(',') ?? defaultDesigns(size)
const FULL_UP_TO = Number(env.SIM_FULL_UP_TO ?? 300)
/**
 * Observers beyond FULL_UP_TO: every advert costs one real PeerTable update per observer (~5 µs
 * here), so their number is set for ~200,000 table entries per run — 200 at 1,000, 20 at 10,000.
 */
const observersFor = (size: number): number => Number(env.SIM_OBSERVERS ?? Math.max(20, Math.round(200_000 / size)))
/**
 * A decision ranks every entry of the caller's table (~2.5 ms at 1,000 here, ~25 ms at 10,000):
 * the load phases shrink with the size beyond 1,000 so that a run makes as many decisions' worth
 * of work.
 */
const loadScale = (size: number): number => Math.min(1, 1000 / size)
const POLICY = env.SIM_POLICY ?? 'local-first'

function design (name: string): Design {
  const d = DESIGNS[name]
  if (d === undefined) throw new Error(`unknown design '${name}': use ${Object.keys(DESIGNS).join(', ')}`)
  return d
}

function policy (): NonNullable<typeof POLICIES[string]> {
  const p = POLICIES[POLICY]
  if (p === undefined) throw new Error(`unknown policy '${POLICY}'`)
  return p
}

const f1 = (x: number): string => Number.isFinite(x) ? x.toFixed(1) : '∞'
const f2 = (x: number): string => Number.isFinite(x) ? x.toFixed(2) : '∞'
const conv = (c: Convergence): string => `${f1(c.p99S)} / ${Number.isFinite(c.allS) ? f1(c.allS) : `>${c.boundS.toFixed(0)}`}`

function rows (all: Figures[]): { churn: string[][], load: string[][] } {
  return {
    churn: all.map(f => [
      `${f.design.name} (hb ${f.design.heartbeatMs / 1000} s, exp ${f.design.expiryMs / 1000} s)`,
      f.idle.advertsPerAgentS.toFixed(3),
      f1(f.idle.msgsPerAgentS),
      f1(f.idle.controlsPerAgentS),
      f2(f.idle.kBPerAgentS),
      `${f.idle.spreadP50Ms.toFixed(0)} / ${f.idle.spreadP99Ms.toFixed(0)}`,
      conv(f.join),
      conv(f.leave),
      `${f.wallS.toFixed(0)}`
    ]),
    load: all.map(f => [
      f.design.name,
      `${f2(f.load.ageP50S)} / ${f2(f.load.ageP99S)}`,
      f1(f.load.wrongPct),
      f2(f.load.advertsPerBusyAgentS),
      String(f.load.calls),
      f1(f.load.offloadedPct),
      f2(f.load.refusedPct),
      `${f.load.p99Ms.toFixed(0)} / ${f.load.unloadedP99Ms.toFixed(0)} (${(f.load.p99Ms / f.load.unloadedP99Ms).toFixed(2)}×)`,
      f2(f.load.triesMean),
      f.load.decisionUs.toFixed(0)
    ])
  }
}

async function main (): Promise<void> {
  const seed = Number(env.SIM_SEED ?? 1)
  const base = {
    seed,
    connections: Number(env.SIM_CONNECTIONS ?? 12),
    idleSeconds: Number(env.SIM_SECONDS ?? 5),
    churn: 0.1,
    overloaded: Number(env.SIM_OVERLOADED ?? 10),
    loadFactor: 3,
    unloadedFactor: 0.3,
    unloadedSeconds: Number(env.SIM_UNLOADED_SECONDS ?? 1),
    loadSeconds: Number(env.SIM_LOAD_SECONDS ?? 2),
    serviceMs: 50,
    deadlineMs: Number(env.SIM_DEADLINE_MS ?? 3000),
    policy: policy(),
    ...(env.SIM_QUIET === undefined ? { progress: (line: string) => { process.stderr.write(`  ${line}\n`) } } : {})
  }
  process.stdout.write(`edge-agent simulate: seed ${seed}, sizes ${SIZES.join(', ')}, designs ${env.SIM_DESIGNS ?? SIZES.map(n => `${defaultDesigns(n).join('/')} at ${n}`).join(', ')}, policy ${POLICY}; ${base.connections} connections per agent, gossipsub D ${GOSSIP.D} (${GOSSIP.Dlo}…${GOSSIP.Dhi}), heartbeat ${GOSSIP.heartbeatMs} ms; slots 1–4, calls ~${base.serviceMs} ms exp., deadline ${base.deadlineMs} ms\n`)
  for (const size of SIZES) {
    const observers = size > FULL_UP_TO ? observersFor(size) : undefined
    const scale = loadScale(size)
    const sized = { ...base, size, unloadedSeconds: base.unloadedSeconds * scale, loadSeconds: base.loadSeconds * scale, ...(observers !== undefined ? { observers } : {}) }
    const all: Figures[] = []
    for (const name of designsFor(size)) all.push(await runScenario({ ...sized, design: design(name) }))
    const first = all[0]
    const how = observers === undefined
      ? 'every agent keeps a full, fed peer table'
      : `one topic; all ${size} agents publish, ${first?.observers ?? observers} sampled observers keep fed tables: table and call figures are theirs`
    const { churn, load } = rows(all)
    printTable(`${size} agents (${how}); advert ${first?.advertBytes ?? 0} B CBOR; idle, then ${Math.round(0.1 * size)} join, then as many leave`, [
      'design', 'adverts /agent/s', 'msgs rx+fwd /agent/s', 'ctrl msgs /agent/s', 'kB/s /agent in+out', 'spread ms p50 / p99', 'join: 99% / all s', 'leave: 99% / all s', 'wall s'
    ], churn)
    printTable(`${size} agents under load: ${base.overloaded} agents at ${base.loadFactor}× their capacity for ${sized.loadSeconds} s (after ${sized.unloadedSeconds} s at ${base.unloadedFactor}×: the unloaded p99), the rest idle; policy ${POLICY}`, [
      'design', 'load age s p50 / p99', 'view wrong %', 'adverts /busy agent/s', 'calls', 'offloaded %', 'refused %', 'p99 ms loaded / unloaded', 'tries /call', 'µs /decision'
    ], load)
  }
}

await main()
