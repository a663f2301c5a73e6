import '../../agent/polyfill.js'
import { describe, test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { up, type Testnet } from '../../testnet/index.js'
import { EXIT_PENDING } from '../../cli/commands/async.js'
import { EDGE_BIN, eventually, example, fixture, runNode, type Run } from '../helpers.js'

/**
 * Async calls through the CLI, against agent processes: `edge invoke --async` hands a call to the
 * agent's journal, `edge poll` reads its state and result, and a kill -9 loses no accepted call.
 * Agent 1 runs one async call at a time, so that a second one waits in its journal.
 */
describe('async calls', () => {
  const home = mkdtempSync(join(tmpdir(), 'edge-async-'))
  const env = { EDGE_TESTNET_HOME: join(home, 'testnet') }
  let net: Testnet

  async function edge (args: string[]): Promise<Run> {
    return await runNode(EDGE_BIN, args, { env })
  }

  before(async () => {
    net = await up({ peers: 2, dir: env.EDGE_TESTNET_HOME, agentArgs: (k) => ['--replicas', '1', ...(k === 1 ? ['--async-concurrency', '1'] : [])] })
    await net.client(1).deploy('primes', example('primes'))
    await net.client(1).deploy('sleep', fixture('sleep'), { timeout: '20s' })
    await eventually(async () => (await net.client(2).list()).some(f => f.name === 'primes' && f.holders.length > 0), 10_000, 'primes known on 2')
  })
  after(async () => {
    await net?.down()
    rmSync(home, { recursive: true, force: true })
  })

  test('edge invoke --async prints an id at once; edge poll --wait prints the output when it is done', async () => {
    const accepted = await edge(['--node', '2', 'invoke', 'primes', '-p', 'n:1000', '--async'])
    assert.equal(accepted.code, 0, accepted.stderr)
    const id = accepted.stdout.trim()
    assert.match(id, /^[0-9a-f-]{36}$/)
    assert.match(accepted.stderr, /accepted primes@1 as /)
    const polled = await edge(['--node', '2', 'poll', id, '--wait', '20s'])
    assert.equal(polled.code, 0, polled.stderr)
    assert.equal(polled.stdout, '{"n":1000,"primes":168}\n')
    assert.match(polled.stderr, /ran primes v1 on /)
    const json = await edge(['--node', '2', '--json', 'poll', id])
    const record = JSON.parse(json.stdout) as { state: string, target: string, result: { function: { name: string } } }
    assert.equal(record.state, 'done')
    assert.equal(record.result.function.name, 'primes')
    const list = await edge(['--node', '2', 'requests'])
    assert.match(list.stdout, new RegExp(`${id}\\s+primes@1\\s+done in`))
  })

  test('bad async calls fail on one line when they are made, not later', async () => {
    const unknown = await edge(['--node', '2', 'invoke', 'nosuch', '--async'])
    assert.equal(unknown.code, 1)
    assert.match(unknown.stderr, /^edge: error: .*nosuch.*\n$/)
    const policy = await edge(['--node', '2', 'invoke', 'primes', '--async', '--policy', 'fastest'])
    assert.equal(policy.code, 1)
    assert.match(policy.stderr, /^edge: error: unknown policy 'fastest'/)
    const poll = await edge(['--node', '2', 'poll', '00000000-0000-4000-8000-000000000000'])
    assert.equal(poll.code, 1)
    assert.match(poll.stderr, /^edge: error: no async call '00000000-0000-4000-8000-000000000000' on this agent/)
  })

  test('after a kill -9, the queued call runs and the running one is reported interrupted', async () => {
    const submit = async (ms: string): Promise<string> => {
      const r = await edge(['--node', '1', 'invoke', 'sleep', '--data', ms, '--local', '--async'])
      assert.equal(r.code, 0, r.stderr)
      return r.stdout.trim()
    }
    const long = await submit('15000')
    await eventually(async () => /running for/.test((await edge(['--node', '1', 'poll', long])).stderr), 10_000, 'the long call to run')
    const queued = await submit('10')
    const waiting = await edge(['--node', '1', 'poll', queued])
    assert.equal(waiting.code, EXIT_PENDING)
    assert.match(waiting.stderr, /: queued for /)

    await net.stop(1, { kill: true })
    await net.start(1)

    const interrupted = await edge(['--node', '1', 'poll', long])
    assert.equal(interrupted.code, 1)
    assert.match(interrupted.stderr, /^edge: error: async call .* to sleep@1 failed: the agent stopped while this call was running/)
    const done = await edge(['--node', '1', 'poll', queued, '--wait', '20s'])
    assert.equal(done.code, 0, done.stderr)
    const status = JSON.parse((await edge(['--node', '1', '--json', 'status'])).stdout) as { async: Record<string, number> }
    assert.deepEqual(status.async, { queued: 0, running: 0, done: 1, failed: 1 })
    const metrics = await (await fetch(`${net.agent(1).api}/metrics`)).text()
    assert.match(metrics, /^edge_async_calls\{state="failed"\} 1$/m)
    assert.match(metrics, /^edge_async_calls\{state="queued"\} 0$/m)
  })
})
