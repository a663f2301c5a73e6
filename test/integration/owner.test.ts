import { describe, test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { existsSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { AgentClient } from '../../cli/client.js'
import { EDGE_AGENT_BIN, runAgentCommand, stopAgent } from '../../testnet/process.js'
import { eventually, example, runNode, startAgentIn, text, type Run, type StartedAgent } from '../helpers.js'

/**
 * One owner, many devices: separate data dirs and agent processes, set up as a user would —
 * `init` on the first device, `invite` there, `init --join TOKEN` on the others — with no
 * `trust add` and no restart anywhere.
 */
const root = mkdtempSync(join(tmpdir(), 'edge-owner-test-'))
const started: Array<{ pid: number, dataDir: string }> = []
after(async () => {
  for (const a of started) await stopAgent(a.pid, a.dataDir)
  rmSync(root, { recursive: true, force: true })
})

async function edgeAgent (args: string[]): Promise<Run> {
  return await runNode(EDGE_AGENT_BIN, args)
}

async function invite (dataDir: string, extra: string[] = []): Promise<string> {
  const r = await edgeAgent(['invite', '--data-dir', dataDir, ...extra])
  assert.equal(r.code, 0, r.stderr)
  return r.stdout.trim()
}

async function join_ (name: string, token: string): Promise<Run> {
  return await edgeAgent(['init', '--join', token, '--data-dir', join(root, name), '--listen', '/ip4/127.0.0.1/tcp/0', '--api-port', '0'])
}

interface TrustView { owner: string, holdsOwnerKey: boolean, devices: string[], revoked: string[] }
async function trustList (dataDir: string): Promise<TrustView> {
  return JSON.parse(await runAgentCommand(['trust', 'list', '--json', '--data-dir', dataDir])) as TrustView
}

describe('devices joined with an invite', () => {
  let a: StartedAgent, b: StartedAgent, c: StartedAgent
  let clients: { a: AgentClient, b: AgentClient, c: AgentClient }

  before(async () => {
    await runAgentCommand(['init', '--data-dir', join(root, 'a'), '--quiet'])
    a = await startAgentIn(root, 'a', [], {}, started)
    const token = await invite(a.dataDir)
    // One token joins many devices.
    for (const name of ['b', 'c']) {
      const r = await join_(name, token)
      assert.equal(r.code, 0, r.stderr)
      assert.match(r.stdout, /^joined as device 12D3Koo\w+ of owner 12D3Koo\w+ \(\d devices\)/)
    }
    b = await startAgentIn(root, 'b', [], {}, started)
    c = await startAgentIn(root, 'c', [], {}, started)
    clients = { a: new AgentClient(a.info.api), b: new AgentClient(b.info.api), c: new AgentClient(c.info.api) }
    for (const client of Object.values(clients)) await eventually(async () => (await client.status()).peers === 2, 20_000, 'every device to see the other two')
    await clients.a.deploy('echo', example('echo'))
    await clients.b.deploy('primes', example('primes'))
    await eventually(async () => (await clients.c.list()).some(f => f.name === 'echo') && (await clients.a.list()).some(f => f.name === 'primes'), 10_000, 'both functions known')
  })

  test('share the owner of the inviting device and list each other on its roster', async () => {
    const [va, vb, vc] = await Promise.all([a, b, c].map(async x => await trustList(x.dataDir)))
    assert.equal(va?.holdsOwnerKey, true)
    assert.equal(vb?.holdsOwnerKey, false)
    assert.equal(vb?.owner, va?.owner)
    assert.equal(vc?.owner, va?.owner)
    // Each device has the newest roster: c's join reached b (gossip, or c's hello).
    for (const x of [a, b, c]) await eventually(async () => (await trustList(x.dataDir)).devices.length === 3, 10_000, 'a roster of three everywhere')
    assert.deepEqual(new Set((await trustList(b.dataDir)).devices), new Set([a.info.peerId, b.info.peerId, c.info.peerId]))
  })

  test('run each other\'s deploys and take each other\'s calls, with no trust add', async () => {
    assert.equal(text((await clients.c.invoke('echo', { input: Buffer.from('from a'), policy: 'local' })).outputBytes), 'from a')
    assert.match(text((await clients.a.invoke('primes', { input: Buffer.from('{"n":30}'), policy: 'local' })).outputBytes), /"primes":10/)
    // Offloading: a sends a call to b because b is one of the owner's devices.
    const r = await clients.a.invoke('echo', { input: Buffer.from('there'), peer: b.info.peerId })
    assert.equal(r.ranOn, b.info.peerId)
  })

  test('a revoked device is trusted by none of them within seconds, and the inviting device says so', async () => {
    await clients.c.deploy('sieve', example('primes'))
    await eventually(async () => (await clients.b.list()).some(f => f.name === 'sieve'), 10_000, 'sieve known on b')
    // A prefix of its id is enough.
    const out = await runAgentCommand(['trust', 'revoke', c.info.peerId.slice(0, 16), '--data-dir', a.dataDir])
    assert.match(out, new RegExp(`^revoked ${c.info.peerId}`))
    await eventually(async () => (await trustList(b.dataDir)).revoked.includes(c.info.peerId), 10_000, 'b to learn of the revocation')
    assert.equal((await trustList(b.dataDir)).devices.includes(c.info.peerId), false)
    await assert.rejects(clients.b.invoke('sieve', { input: Buffer.from('{"n":5}'), policy: 'local' }), { message: new RegExp(`signed by ${c.info.peerId}, and its owner revoked that device`) })
    await assert.rejects(clients.a.invoke('echo', { input: Buffer.from('x'), peer: c.info.peerId }), { message: /its owner revoked that device/ })
    // What the owner's other devices deployed still runs.
    assert.equal(text((await clients.b.invoke('echo', { input: Buffer.from('still'), policy: 'local' })).outputBytes), 'still')
  })

  test('only the device holding the owner key invites and revokes', async () => {
    for (const args of [['invite'], ['trust', 'revoke', a.info.peerId]]) {
      const r = await edgeAgent([...args, '--data-dir', b.dataDir])
      assert.equal(r.code, 1)
      assert.match(r.stderr.trim(), /^edge-agent: error: this device does not hold the owner key of its swarm \(owner 12D3Koo\w+\): [^\n]+$/)
    }
  })
})

describe('a join that cannot happen', () => {
  let owner: StartedAgent

  before(async () => {
    await runAgentCommand(['init', '--data-dir', join(root, 'owner'), '--quiet'])
    owner = await startAgentIn(root, 'owner', [], {}, started)
  })

  test('an expired or damaged token is one line and writes nothing', async () => {
    const expired = await invite(owner.dataDir, ['--ttl', '1ms'])
    await new Promise(resolve => setTimeout(resolve, 5))
    for (const [token, message] of [[expired, /this invite expired at .*: make a new one with 'edge-agent invite'/], [expired.slice(0, 80), /the invite token is damaged/], ['swarm-key-please', /not an invite token/]] as const) {
      const r = await join_('never', token)
      assert.equal(r.code, 1)
      assert.match(r.stderr.trim(), new RegExp(`^edge-agent: error: ${message.source}[^\\n]*$`))
      assert.equal(existsSync(join(root, 'never')), false)
    }
  })

  test('a token another owner key made is refused by the device it names', async () => {
    // This device's own invite with a MAC its owner key did not make (a forgery, or another owner's).
    const { decodeInvite, encodeInvite } = await import('../../protocol/roster.js')
    const real = decodeInvite(await invite(owner.dataDir))
    const forged = encodeInvite({ ...real, mac: new Uint8Array(32).fill(9) })
    const r = await join_('forged', forged)
    assert.equal(r.code, 1)
    assert.match(r.stderr.trim(), /^edge-agent: error: the inviting device refused: this invite was not made by the owner key/)
    assert.equal(existsSync(join(root, 'forged')), false)
  })

  test('an inviting device that is not running is named, and nothing is written', async () => {
    const token = await invite(owner.dataDir)
    await stopAgent(owner.pid, owner.dataDir)
    const r = await join_('orphan', token)
    assert.equal(r.code, 1)
    assert.match(r.stderr.trim(), /^edge-agent: error: could not reach the inviting device \(.*\): is its agent running/)
    assert.equal(existsSync(join(root, 'orphan')), false)
    const again = await edgeAgent(['invite', '--data-dir', owner.dataDir])
    assert.equal(again.code, 1)
    assert.match(again.stderr, /is not running: start it/)
  })
})
