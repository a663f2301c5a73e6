import '../../agent/polyfill.js'
import { describe, test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { request } from 'node:http'
import { up, type Testnet } from '../../testnet/index.js'
import type { AgentClient } from '../../cli/client.js'
import { eventually, fixture, text } from '../helpers.js'

/**
 * Offloading under load, on three agent processes with one WASM slot each. Adverts go out only
 * every 5 s here, so what happens between two of them rests on the callers' own accounting (calls
 * in flight, the load peers report in their answers) — not on gossip.
 */
describe('a swarm under load', () => {
  let net: Testnet
  let a1: AgentClient
  const ADVERT_MS = 5000

  before(async () => {
    net = await up({
      peers: 3,
      agentArgs: () => ['--wasm-slots', '1', '--advert-interval', `${ADVERT_MS}ms`, '--peer-expiry', '60s', '--replicas', '3'],
      readyTimeoutMs: 60_000
    })
    a1 = net.client(1)
    await a1.deploy('sleep', fixture('sleep'), { timeout: '20s' })
    // Every agent holds the code (replicas), so that no call waits on a fetch.
    await eventually(async () => {
      for (const k of [1, 2, 3]) if (!(await net.client(k).status()).functions.some(f => f.name === 'sleep')) return false
      return true
    }, 30_000, 'the code on every agent')
  })
  after(async () => { await net?.down() })

  /** Each agent's slot, free again (no call of an earlier test still running). */
  async function idle (): Promise<void> {
    await eventually(async () => {
      for (const k of [1, 2, 3]) if ((await net.client(k).status()).runtimes.find(r => r.kind === 'wasm')?.busy !== 0) return false
      return true
    }, 20_000, 'every slot free')
  }

  test('a saturated agent spreads a burst over its idle peers within one advert interval', async () => {
    await idle()
    // 12 calls of 300 ms at once on agent 1: its one slot alone would take 3.6 s.
    const calls = Array.from({ length: 12 }, async () => await a1.invoke('sleep', { input: Buffer.from('300'), timeoutMs: 20_000 }))
    const started = Date.now()
    const results = await Promise.all(calls)
    const elapsed = Date.now() - started
    assert.ok(results.every(r => text(r.outputBytes) === 'slept 300\n'))
    const ranOn = new Map<string, number>()
    for (const r of results) ranOn.set(r.ranOn, (ranOn.get(r.ranOn) ?? 0) + 1)
    const counts = [1, 2, 3].map(k => ranOn.get(net.agent(k).peerId) ?? 0)
    // Even spread: each agent ran about a third. One call per peer per advert (the old accounting)
    // would have left agent 1 with ten.
    for (const [i, n] of counts.entries()) assert.ok(n >= 3, `agent ${i + 1} ran ${n} of 12 calls (${counts.join('/')})`)
    // The burst was over well within one advert interval: gossip did not carry this.
    assert.ok(elapsed < ADVERT_MS, `burst took ${elapsed} ms`)
  })

  test('a call no place can finish before its deadline is refused at once with 429 and Retry-After', async () => {
    await idle()
    // Agent 1 learns what a call of 'sleep' takes (~300 ms): no queue can fit one in 250 ms.
    await a1.invoke('sleep', { input: Buffer.from('300'), policy: 'local' })
    const blockers = [1, 2, 3].map(async (k) => await net.client(k).invoke('sleep', { input: Buffer.from('2500'), policy: 'local', timeoutMs: 20_000 }))
    await eventually(async () => {
      for (const k of [1, 2, 3]) if ((await net.client(k).status()).runtimes.find(r => r.kind === 'wasm')?.busy !== 1) return false
      return true
    }, 10_000, 'every slot busy')
    const answer = await post(net.agent(1).api, '/v1/functions/sleep/invoke', { input: Buffer.from('10').toString('base64'), timeoutMs: 250 })
    assert.equal(answer.status, 429)
    const body = JSON.parse(answer.body) as { error: { code: string, message: string, retryAfterMs: number } }
    assert.equal(body.error.code, 'OVERLOADED')
    assert.match(body.error.message, /busy.*try again later/)
    assert.ok(Number(answer.headers['retry-after']) >= 1, `Retry-After: ${String(answer.headers['retry-after'])}`)
    assert.ok(body.error.retryAfterMs > 0)
    // The same call with time enough waits for a slot and runs.
    const patient = await a1.invoke('sleep', { input: Buffer.from('10'), timeoutMs: 20_000 })
    assert.equal(text(patient.outputBytes), 'slept 10\n')
    await Promise.all(blockers)
  })

  test('a client that disconnects frees the slot its call took on a peer', async () => {
    await idle()
    // Agent 1's slot is busy: the next call goes to a peer.
    const blocker = a1.invoke('sleep', { input: Buffer.from('3000'), policy: 'local', timeoutMs: 20_000 })
    await eventually(async () => (await a1.status()).runtimes.find(r => r.kind === 'wasm')?.busy === 1, 10_000, 'agent 1 busy')
    const gone = abandoned(net.agent(1).api, '/v1/functions/sleep/invoke', { input: Buffer.from('15000').toString('base64'), timeoutMs: 30_000 })
    const peer = await eventually(async () => {
      for (const k of [2, 3]) if ((await net.client(k).status()).runtimes.find(r => r.kind === 'wasm')?.busy === 1) return k
      return undefined
    }, 10_000, 'the call running on a peer')
    gone.abort()
    // The 15 s call stops on the peer as soon as the cancel arrives, and says why.
    await eventually(async () => (await net.client(peer).status()).runtimes.find(r => r.kind === 'wasm')?.busy === 0, 5000, `agent ${peer}'s slot freed`)
    const logs = await net.client(peer).logs({ name: 'sleep', limit: 5 })
    assert.match(logs.at(-1)?.error ?? '', /cancel/)
    await blocker
  })

  test('a call cut off by its agent\'s stop is reported interrupted and runs elsewhere', async () => {
    await idle()
    const blocker = a1.invoke('sleep', { input: Buffer.from('3000'), policy: 'local', timeoutMs: 20_000 })
    await eventually(async () => (await a1.status()).runtimes.find(r => r.kind === 'wasm')?.busy === 1, 10_000, 'agent 1 busy')
    const call = a1.invoke('sleep', { input: Buffer.from('1500'), timeoutMs: 20_000 })
    const victim = await eventually(async () => {
      for (const k of [2, 3]) if ((await net.client(k).status()).runtimes.find(r => r.kind === 'wasm')?.busy === 1) return k
      return undefined
    }, 10_000, 'the call running on a peer')
    await net.stop(victim)
    const res = await call
    assert.equal(text(res.outputBytes), 'slept 1500\n')
    assert.equal(res.attempts[0]?.peerId, net.agent(victim).peerId)
    assert.equal(res.attempts[0]?.outcome, 'interrupted')
    assert.notEqual(res.ranOn, net.agent(victim).peerId)
    await blocker
    await net.start(victim)
  })
})

interface Answer { status: number, headers: Record<string, string | string[] | undefined>, body: string }

async function post (api: string, path: string, body: unknown): Promise<Answer> {
  return await new Promise((resolve, reject) => {
    const req = request(`${api}${path}`, { method: 'POST', headers: { 'content-type': 'application/json' } }, (res) => {
      let text = ''
      res.on('data', (d: Buffer) => { text += d.toString() })
      res.on('end', () => { resolve({ status: res.statusCode ?? 0, headers: res.headers, body: text }) })
    })
    req.on('error', reject)
    req.end(JSON.stringify(body))
  })
}

/** Sends a call, and returns what closes its connection before the answer (a client that left). */
function abandoned (api: string, path: string, body: unknown): { abort: () => void } {
  const req = request(`${api}${path}`, { method: 'POST', headers: { 'content-type': 'application/json' } })
  req.on('error', () => {})
  req.end(JSON.stringify(body))
  return { abort: () => { req.destroy() } }
}
