import '../../agent/polyfill.js'
import { describe, test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { up, type Testnet } from '../../testnet/index.js'
import { sleep } from '../../testnet/process.js'
import { eventually } from '../helpers.js'

/**
 * Liveness from libp2p's connections, not from advert timing: a 12-agent testnet on two cores
 * converges and stays converged, with no peer leaving any table; a killed agent leaves the others'
 * tables (its connections closed and it cannot be redialled); restarted, it rejoins everywhere.
 */
describe('a swarm of twelve agents', () => {
  let net: Testnet
  const N = 12

  before(async () => {
    net = await up({ peers: N, agentArgs: () => ['--wasm-slots', '1', '--no-docker'] })
  })
  after(async () => { await net?.down() })

  async function leaves (): Promise<number[]> {
    return await Promise.all(net.agents.map(async (a) => (await net.client(a.index).status()).peerEvents.left))
  }

  test('converges, and stays converged for 30 s with no peer leaving any table', async () => {
    const before = await leaves()
    for (const [i, n] of before.entries()) assert.equal(n, 0, `agent ${i + 1} had ${n} peers leave while the testnet formed`)
    // Half a minute of an idle swarm: long enough for several advert heartbeats to be late on a
    // loaded machine, which is what made peer tables flap when adverts decided liveness.
    await sleep(30_000)
    assert.deepEqual(await leaves(), before.map(() => 0), 'no peer:leave anywhere')
    for (const a of net.agents) assert.equal((await net.client(a.index).status()).peers, N - 1, `agent ${a.index} sees all the others`)
  })

  test('a killed agent leaves every table, and rejoins when it is back', async () => {
    const victim = net.agent(N)
    const others = net.agents.filter(a => a !== victim)
    await net.stop(N, { kill: true })
    await eventually(async () => {
      for (const a of others) if ((await net.client(a.index).peers()).some(p => p.peerId === victim.peerId)) return false
      return true
    }, 20_000, `agent ${N} gone from every table`)
    await net.start(N)
    await eventually(async () => {
      for (const a of others) if (!(await net.client(a.index).peers()).some(p => p.peerId === victim.peerId)) return false
      return (await net.client(N).status()).peers === N - 1
    }, 30_000, `agent ${N} back in every table, and every other in its own`)
  })
})
