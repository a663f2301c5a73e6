import '../../agent/polyfill.js'
import { describe, test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { up, type Testnet } from '../../testnet/index.js'
import { bigModule, example, eventually, text } from '../helpers.js'

/**
 * Function code kept by the swarm: five agents, three copies of each function (the default), chosen
 * by rendezvous hashing; the deployer may leave.
 */
describe('code in the DHT, replicated', () => {
  let net: Testnet

  before(async () => { net = await up({ peers: 5 }) })
  after(async () => { await net?.down() })

  test('a deployed function reaches three holders, and keeps three after its deployer is killed', async () => {
    const a1 = net.client(1)
    await a1.deploy('primes', example('primes'))
    // Over the size that rides in deploy announcements: an agent that runs it must fetch it.
    const wide = bigModule(64 * 1024)
    await a1.deploy('wide', wide.module)
    const holders = async (k: number, name = 'wide'): Promise<string[]> => (await net.client(k).list()).find(f => f.name === name)?.holders ?? []
    const initial = await eventually(async () => { const h = await holders(5); return h.length >= 3 ? h : undefined }, 20_000, 'three holders')
    assert.ok(initial.includes(net.agent(1).peerId), 'the deployer is one of them')
    const stranger = net.agents.find(a => !initial.includes(a.peerId))
    assert.ok(stranger, 'some agent holds no copy')
    await eventually(async () => (await holders(5, 'primes')).length >= 3, 20_000, 'three holders of primes')

    await net.stop(1, { kill: true })
    const res = await net.client(stranger.index).invoke('wide', { policy: 'local' })
    assert.equal(text(res.outputBytes), wide.output)
    assert.ok(res.timings.fetchMs > 0, 'the code came from a replica, not from the (dead) deployer')

    const others = net.agents.filter(a => a.index !== 1).map(a => a.index)
    await eventually(async () => {
      const h = (await holders(others[0] as number)).filter(id => id !== net.agent(1).peerId)
      const p = (await holders(others[0] as number, 'primes')).filter(id => id !== net.agent(1).peerId)
      return h.length >= 3 && p.length >= 3
    }, 30_000, 'three live holders again')
  })

  test('a 50 MB function reaches three holders chunk by chunk and runs where it never was', async () => {
    // pnet's cipher once crashed a process after ~60 MB of large transfers: this moves ~150 MB.
    const { module, output } = bigModule(50 * 1024 * 1024)
    const a2 = net.client(2)
    const dep = await a2.deploy('big', module, { memory: '64MiB' })
    assert.equal(dep.function.size, module.byteLength)
    assert.equal((await a2.manifest('big')).chunks?.length, 51)
    const holders = async (): Promise<string[]> => (await a2.list()).find(f => f.name === 'big')?.holders ?? []
    const three = await eventually(async () => { const h = await holders(); return h.length >= 3 ? h : undefined }, 60_000, 'three holders of big')
    const stranger = net.agents.find(a => a.index !== 1 && !three.includes(a.peerId))
    assert.ok(stranger)
    const res = await net.client(stranger.index).invoke('big', { policy: 'local', timeoutMs: 60_000 })
    assert.equal(text(res.outputBytes), output)
    for (const a of net.agents.filter(a => a.index !== 1)) assert.ok((await net.client(a.index).status()).peerId, `agent ${a.index} still up`)
  })

  test('every live agent reads the signed manifest from the DHT though its deployer is gone', async () => {
    for (const k of [2, 3, 4, 5]) {
      const m = await net.client(k).manifest('primes')
      assert.equal(m.signer, net.agent(1).peerId)
      assert.equal(m.version, 1)
    }
  })

  test('older versions stay runnable as NAME@VERSION, from agents that never held them', async () => {
    const a2 = net.client(2)
    await a2.deploy('multi', example('echo'))
    await a2.deploy('multi', example('primes'))
    const listed = await eventually(async () => {
      const f = (await net.client(5).list()).find(f => f.name === 'multi')
      return f?.version === 2 && f.versions?.length === 2 && f.versions.every(v => v.holders >= 3) ? f : undefined
    }, 30_000, 'both versions with three holders each')
    assert.deepEqual(listed.versions?.map(v => v.version), [2, 1])
    const stranger = net.agents.find(a => a.index !== 1 && !listed.holders.includes(a.peerId))
    assert.ok(stranger, 'some live agent holds neither version')
    const c = net.client(stranger.index)
    assert.equal(text((await c.invoke('multi', { params: { n: 10 }, policy: 'local' })).outputBytes), '{"n":10,"primes":4}\n')
    const old = await c.invoke('multi@1', { input: Buffer.from('from v1'), policy: 'local' })
    assert.equal(text(old.outputBytes), 'from v1')
    assert.equal(old.function.version, 1)
    assert.equal((await c.manifest('multi@1')).version, 1)
    await assert.rejects(c.invoke('multi@7'), { status: 404, message: /version 7 of 'multi' is not deployed/ })
    await assert.rejects(c.invoke('multi@x'), { status: 400, message: /bad version 'x'/ })
  })

  test('an agent that was down during a delete drops the function when it returns, and does not bring it back', async () => {
    const a2 = net.client(2)
    await a2.deploy('doomed', example('echo'))
    const holders = await eventually(async () => {
      const h = (await a2.list()).find(f => f.name === 'doomed')?.holders ?? []
      return h.length >= 3 ? h : undefined
    }, 20_000, 'three holders of doomed')
    const away = net.agents.find(a => a.index !== 2 && holders.includes(a.peerId))
    assert.ok(away, 'a holder other than the deployer')
    await net.stop(away.index)
    await a2.delete('doomed')
    await net.start(away.index)
    const back = net.client(away.index)
    await eventually(async () => !(await back.list()).some(f => f.name === 'doomed'), 20_000, 'the returning agent to drop doomed')
    await assert.rejects(back.invoke('doomed', { policy: 'local' }), { status: 404 })
    for (const k of [2, 3, 4, 5]) {
      assert.equal((await net.client(k).manifest('doomed')).type, 'tombstone', `agent ${k} still reads the tombstone`)
    }
  })
})

describe('small code rides with its deploy announcement', () => {
  let net: Testnet

  // One copy of each function: the deployer's, so that when it dies no replica is left to fetch from.
  before(async () => { net = await up({ peers: 3, agentArgs: () => ['--replicas', '1'] }) })
  after(async () => { await net?.down() })

  test('every agent runs a small function its only holder no longer serves; a large one needs a holder', async () => {
    const a1 = net.client(1)
    await a1.deploy('echo', example('echo'))
    const large = bigModule(64 * 1024)
    await a1.deploy('large', large.module)
    for (const k of [2, 3]) {
      await eventually(async () => { const names = (await net.client(k).list()).map(f => f.name); return names.includes('echo') && names.includes('large') }, 20_000, `agent ${k} to list both`)
    }
    await net.stop(1, { kill: true })
    for (const k of [2, 3]) {
      const res = await net.client(k).invoke('echo', { input: Buffer.from(`on ${k}`), policy: 'local' })
      assert.equal(text(res.outputBytes), `on ${k}`)
      assert.equal(res.ranOn, net.agent(k).peerId)
    }
    await assert.rejects(net.client(2).invoke('large', { policy: 'local', timeoutMs: 15_000 }), { message: /fetch|provider/ })
  })
})
