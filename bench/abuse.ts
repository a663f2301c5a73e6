import { execFileSync, spawn } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { createHash } from 'node:crypto'
import { availableParallelism, tmpdir } from 'node:os'
import { join } from 'node:path'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey, peerIdFromString } from '@libp2p/peer-id'
import { up, type Testnet } from '../testnet/index.js'
import { runAgentCommand, sleep } from '../testnet/process.js'
import { FramedStream, INVOKE_PROTOCOL, MAX_INVOKE_FRAME_BYTES, WIRE_VERSION } from '../protocol/index.js'
import { bareMember, example, metricValue } from '../test/helpers.js'
import { memMiB, pct } from './stats.js'
import type { EdgeNode } from '../agent/swarm/node.js'

/**
 * Issue 12's figures: what one swarm member that agent 1 trusts (a device of the owner's, taken
 * over) costs agent 1 by flooding /edge/invoke/1 — the latency of agent 1's own GET /v1/status,
 * sampled every 20 ms during each flood, against the same sampling with no flood in this run; and
 * agent 1's RSS before, right after, and 30 s after the floods. Target: status < 100 ms throughout,
 * memory back to its baseline.
 */

const SAMPLE_EVERY_MS = 20

/**
 * Agent 1 and its sampler get CPU 0, everything else (this process, which floods, and agents 2
 * and 3) the other CPUs: the flooder is another device, and on a shared pair of cores the
 * sampler's own wait for a CPU had counted as agent 1's latency. False when this machine has one
 * CPU or no `taskset`.
 */
function pin (pid: number, cpus: string): boolean {
  try {
    execFileSync('taskset', ['-apc', cpus, String(pid)], { stdio: 'ignore' })
    return true
  } catch {
    return false
  }
}
const CPUS = availableParallelism()
const OTHERS = CPUS > 2 ? `1-${CPUS - 1}` : '1'

/** V8's heap in use on agent `k`, MiB, from its /metrics. */
async function heapMiB (net: Testnet, k: number): Promise<number> {
  return await metricValue(net.agent(k).api, 'nodejs_heap_size_used_bytes') / 1048576
}

function rssMiB (pid: number): number {
  return memMiB(pid).rss
}

/**
 * Samples GET /v1/status latencies on agent `k` every SAMPLE_EVERY_MS until `stop`: from a
 * process of its own, so that this one's work (it floods) does not delay them. Resolves once the
 * first sample is in. The sampler's first request is not a sample: it loads the sampler's own
 * HTTP client and opens its connection (75–99 ms on the CPU it shares with agent 1, which was
 * the baseline's maximum and, with ~60 samples in a flood, its p99).
 */
async function startSampler (net: Testnet, k: number, pinned: boolean): Promise<{ stop: () => Promise<number[]> }> {
  const script = `
    const out = []
    let stop = false
    process.on('SIGTERM', () => { stop = true })
    await (await fetch(process.argv[1] + '/v1/status')).arrayBuffer()
    while (!stop) {
      const t = performance.now()
      await (await fetch(process.argv[1] + '/v1/status')).arrayBuffer()
      if (out.push(performance.now() - t) === 1) process.stdout.write('R')
      await new Promise(resolve => setTimeout(resolve, ${SAMPLE_EVERY_MS}))
    }
    process.stdout.write(JSON.stringify(out))`
  const child = spawn(process.execPath, ['--input-type=module', '-e', script, net.agent(k).api], { stdio: ['ignore', 'pipe', 'inherit'] })
  if (pinned && child.pid !== undefined) pin(child.pid, '0')
  let text = ''
  let ready: () => void = () => {}
  const first = new Promise<void>((resolve) => { ready = resolve })
  child.stdout.on('data', (c: Buffer) => {
    text += c.toString('utf8')
    if (text.startsWith('R')) ready()
  })
  const exited = new Promise<void>((resolve) => { child.once('exit', () => { ready(); resolve() }) })
  await first
  return {
    stop: async () => {
      child.kill('SIGTERM')
      await exited
      return (JSON.parse(text.slice(1) === '' ? '[]' : text.slice(1)) as number[]).sort((a, b) => a - b)
    }
  }
}

interface Flood { answers: number, busy: number, closed: number }

/** Writes `frames` on streams of `perStream` frames each (a fresh stream when one closes); resolves once all are answered or their streams closed. */
async function flood (member: EdgeNode, target: string, frames: (i: number) => unknown, count: number, perStream: number): Promise<Flood> {
  const out: Flood = { answers: 0, busy: 0, closed: 0 }
  for (let sent = 0; sent < count;) {
    const stream = await member.dialProtocol(peerIdFromString(target), INVOKE_PROTOCOL)
    let answered = 0
    let closed = false
    const n = Math.min(perStream, count - sent)
    const settled = new Promise<void>((resolve) => {
      const framed = new FramedStream(stream, {
        maxFrameBytes: MAX_INVOKE_FRAME_BYTES,
        onMessage: (m) => {
          out.answers++
          if ((m as { code?: string }).code === 'BUSY') out.busy++
          if (++answered === n) resolve()
        },
        onClose: () => { closed = true; out.closed++; resolve() }
      })
      void (async () => {
        for (let i = 0; i < n && !closed; i++) await framed.write(frames(sent + i)).catch(() => {})
      })()
    })
    sent += n
    await Promise.race([settled, sleep(60_000)])
    if (!closed) stream.abort(new Error('done'))
  }
  return out
}

export async function abuseBench (print: (title: string, headers: string[], rows: string[][]) => void): Promise<void> {
  const key = await generateKeyPair('Ed25519')
  const net = await up({ peers: 3 })
  const dir = mkdtempSync(join(tmpdir(), 'edge-bench-abuse-'))
  let member: EdgeNode | undefined
  try {
    await runAgentCommand(['trust', 'add', peerIdFromPrivateKey(key).toString(), '--data-dir', net.agent(1).dataDir])
    await net.stop(1)
    await net.start(1)
    await net.waitForMesh()
    const primes = await net.client(1).deploy('primes', example('primes'))
    member = await bareMember(net, dir, { privateKey: key, trusts: () => true })
    await member.start()
    const target = net.agent(1).peerId
    for (let i = 0; i < 100 && !member.getConnections().some(c => c.remotePeer.toString() === target); i++) await sleep(100)
    await sleep(2000)
    const pid = net.agent(1).pid
    const pinned = CPUS >= 2 && pin(pid, '0') && [process.pid, net.agent(2).pid, net.agent(3).pid].every(p => pin(p, OTHERS))
    const rows: string[][] = []
    const idle = await startSampler(net, 1, pinned)
    await sleep(3000)
    const baseline = await idle.stop()
    const idleP99 = pct(baseline, 0.99)
    rows.push(['none (baseline)', '–', '–', '–', pct(baseline, 0.5).toFixed(1), idleP99.toFixed(1), (baseline.at(-1) ?? 0).toFixed(1), '1.00×', `${rssMiB(pid).toFixed(0)}`])
    const rssStart = rssMiB(pid)
    const heapStart = await heapMiB(net, 1)
    const floods: Array<[string, number, number, (i: number) => unknown]> = [
      ['calls for made-up names', 3000, 3000, (i) => ({ v: WIRE_VERSION, type: 'invoke', id: i + 1, fn: { name: `made-up-${i}`, version: 1, sha256: createHash('sha256').update(String(i)).digest('hex') }, input: new Uint8Array(0), deadlineMs: 30_000, holders: [] })],
      ['calls of a real function', 20_000, 20_000, (i) => ({ v: WIRE_VERSION, type: 'invoke', id: i + 1, fn: { name: 'primes', version: primes.function.version, sha256: primes.function.sha256 }, input: Buffer.from('{"n":100}'), deadlineMs: 30_000, holders: [] })],
      ['invalid frames', 100_000, 50, (i) => ({ v: WIRE_VERSION, type: 'invoke', id: i + 1 })]
    ]
    for (const [label, count, perStream, frames] of floods) {
      const before = rssMiB(pid)
      const sampler = await startSampler(net, 1, pinned)
      const r = await flood(member, target, frames, count, perStream)
      const samples = await sampler.stop()
      rows.push([label, String(count), String(r.answers), `${r.busy} BUSY, ${r.closed} streams closed`, pct(samples, 0.5).toFixed(1), pct(samples, 0.99).toFixed(1), (samples.at(-1) ?? 0).toFixed(1), `${(pct(samples, 0.99) / idleP99).toFixed(2)}×`, `${before.toFixed(0)} → ${rssMiB(pid).toFixed(0)}`])
    }
    await sleep(30_000)
    rows.push(['30 s after', '–', '–', '–', '–', '–', '–', '–', `${rssStart.toFixed(0)} → ${rssMiB(pid).toFixed(0)} (heap in use ${heapStart.toFixed(0)} → ${(await heapMiB(net, 1)).toFixed(0)})`])
    print(`8. one trusted member flooding agent 1 over /edge/invoke/1: agent 1's own GET /v1/status during each flood (sampled every 20 ms), and its RSS; ${pinned ? 'agent 1 and the sampler on CPU 0, the flooder and the other agents on the others' : 'all on the same CPUs (taskset unavailable)'}`,
      ['flood', 'frames sent', 'answered', 'refused', 'status p50 ms', 'p99 ms', 'max ms', 'p99 vs idle', 'RSS MiB'], rows)
  } finally {
    // The benches after this one run in this process: it gets every CPU back.
    pin(process.pid, `0-${CPUS - 1}`)
    await member?.stop()
    await net.down()
    rmSync(dir, { recursive: true, force: true })
  }
}
