import { describe, test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtempSync, readFileSync, rmSync, writeFileSync, existsSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Testnet } from '../../testnet/index.js'
import { EDGE_AGENT_BIN } from '../../testnet/process.js'
import { EDGE_BIN, runNode, type Run } from '../helpers.js'

test('both binaries print the package\'s version with --version and -V', async () => {
  const { version } = JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { version: string }
  for (const bin of [EDGE_BIN, EDGE_AGENT_BIN]) {
    for (const flag of ['--version', '-V']) {
      const r = await runNode(bin, [flag])
      assert.equal(r.code, 0, r.stderr)
      assert.equal(r.stdout.trim(), version)
    }
  }
})

/** The `edge` CLI as users run it, against a testnet it starts itself. */
describe('the edge CLI', () => {
  const home = mkdtempSync(join(tmpdir(), 'edge-cli-'))
  const env = { EDGE_TESTNET_HOME: join(home, 'testnet') }

  async function edge (args: string[], input?: string): Promise<Run> {
    return await runNode(EDGE_BIN, args, { env, ...(input !== undefined ? { input } : {}) })
  }

  function oneLineError (r: Run, pattern: RegExp): void {
    assert.equal(r.code, 1, `exit code (stderr: ${r.stderr})`)
    const lines = r.stderr.trim().split('\n')
    assert.equal(lines.length, 1, `one line of error, got: ${r.stderr}`)
    assert.match(lines[0] ?? '', pattern)
  }

  before(async () => {
    const r = await edge(['testnet', 'up', '--peers', '2', '--demo'])
    assert.equal(r.code, 0, r.stderr)
    assert.match(r.stdout, /testnet of 2 agents up/)
    assert.match(r.stdout, /\{"n":100000,"primes":9592\}/)
    assert.match(r.stdout, /→ ran on node 1/)
  })
  after(async () => {
    await Testnet.load(join(home, 'testnet'))?.down()
    rmSync(home, { recursive: true, force: true })
  })

  test('status, peers and list talk to the agent picked with --node', async () => {
    const status = await edge(['--node', '2', 'status'])
    assert.equal(status.code, 0, status.stderr)
    assert.match(status.stdout, /^peer id {4}12D3Koo/m)
    const peers = await edge(['--node', '2', '--json', 'peers'])
    assert.equal((JSON.parse(peers.stdout) as unknown[]).length, 1)
    const list = await edge(['--node', '2', 'list'])
    assert.match(list.stdout, /^primes\s+1\s+wasm/m)
  })

  test('deploy and invoke with params, a params file, and raw data', async () => {
    // A bare number of seconds, as every duration flag takes it (deploy's had read it as ms).
    const dep = await edge(['--node', '1', 'deploy', 'echo', 'examples/echo/echo.wasm', '--memory', '16MiB', '--timeout', '2'])
    assert.equal(dep.code, 0, dep.stderr)
    assert.match(dep.stdout, /deployed echo v1 .*memory 16 MiB, timeout 2000 ms/)
    const p = await edge(['--node', '1', 'invoke', 'echo', '-p', 'a:1', '-p', 'b:text'])
    assert.equal(p.stdout, '{"a":1,"b":"text"}')
    assert.match(p.stderr, /ran echo v1 on here .* policy local-first/)
    const file = join(home, 'params.json')
    writeFileSync(file, '{"n": 1000}')
    const pf = await edge(['--node', '2', 'invoke', 'primes', '--params-file', file, '--near'])
    assert.equal(pf.stdout, '{"n":1000,"primes":168}\n')
    const data = await edge(['--node', '1', 'invoke', 'echo', '--data', '-'], 'raw bytes in')
    assert.equal(data.stdout, 'raw bytes in')
    const json = await edge(['--node', '1', '--json', 'invoke', 'echo', '--data', 'x'])
    assert.equal(JSON.parse(json.stdout).outputText, 'x')
  })

  test('a redeploy bumps the version, list shows the older one kept, and NAME@VERSION runs it', async () => {
    assert.equal((await edge(['--node', '1', 'deploy', 'versioned', 'examples/echo/echo.wasm'])).code, 0)
    const v2 = await edge(['--node', '1', 'deploy', 'versioned', 'examples/primes/primes.wasm'])
    assert.match(v2.stdout, /deployed versioned v2 /)
    const list = await edge(['--node', '1', 'list'])
    assert.match(list.stdout, /^versioned\s+2 \(also 1\)\s+wasm/m)
    const old = await edge(['--node', '2', 'invoke', 'versioned@1', '--data', 'one'])
    assert.equal(old.stdout, 'one', old.stderr)
    assert.match(old.stderr, /ran versioned v1 /)
    oneLineError(await edge(['--node', '1', 'delete', 'versioned@1']), /removes every version of a function: give 'versioned' alone/)
  })

  test('bad input gets one line and exit code 1', async () => {
    oneLineError(await edge(['--node', '1', 'invoke', 'nope']), /^edge: error: unknown function 'nope'/)
    const bad = join(home, 'bad.json')
    writeFileSync(bad, '{"n": ')
    oneLineError(await edge(['--node', '1', 'invoke', 'primes', '--params-file', bad]), /params file .* is not valid JSON/)
    oneLineError(await edge(['--node', '1', 'invoke', 'primes', '--params-file', join(home, 'missing.json')]), /no such params file/)
    oneLineError(await edge(['--agent', 'http://127.0.0.1:1', 'status']), /cannot reach an agent at http:\/\/127\.0\.0\.1:1/)
    oneLineError(await edge(['--node', '9', 'status']), /--node must be 1…2/)
    oneLineError(await edge(['--node', '1', 'deploy', 'junk', 'package.json', '--runtime', 'wasm']), /not a WebAssembly module/)
    oneLineError(await edge(['--node', '1', 'deploy', 'junk', 'package.json']), /cannot tell how package\.json runs: give --runtime wasm, node, python or binary/)
    oneLineError(await edge(['--node', '1', 'deploy', 'Bad Name', 'examples/echo/echo.wasm']), /no such endpoint|bad function name/)
    oneLineError(await edge(['--node', '1', 'deploy', 'x', 'no/such/file.wasm']), /no such file/)
    oneLineError(await edge(['--node', '1', 'deploy', 'x', 'examples/echo/echo.wasm', '--memory', 'lots']), /bad size 'lots'/)
  })

  test('a failing function prints its stderr and a one-line error', async () => {
    await edge(['--node', '1', 'deploy', 'fail', 'test/fixtures/fail.wasm'])
    const r = await edge(['--node', '1', 'invoke', 'fail'])
    assert.equal(r.code, 1)
    assert.deepEqual(r.stderr.trim().split('\n'), ['bad input: nothing to do', 'edge: error: function fail exited with code 3'])
  })

  test('testnet stop, start and status manage one agent', async () => {
    const stop = await edge(['testnet', 'stop', '2', '--kill'])
    assert.equal(stop.code, 0, stop.stderr)
    assert.match((await edge(['testnet', 'status'])).stdout, /^2\s+\S+\s+\d+\s+stopped/m)
    const start = await edge(['testnet', 'start', '2'])
    assert.equal(start.code, 0, start.stderr)
    assert.match((await edge(['testnet', 'status'])).stdout, /^2\s+\S+\s+\d+\s+running/m)
    const again = await edge(['--node', '2', 'invoke', 'primes', '-p', 'n:10'])
    assert.equal(again.stdout, '{"n":10,"primes":4}\n')
  })

  test('testnet down stops every agent and removes its files', async () => {
    const net = Testnet.load(join(home, 'testnet'))
    assert.ok(net)
    const down = await edge(['testnet', 'down'])
    assert.equal(down.code, 0, down.stderr)
    assert.equal(existsSync(join(home, 'testnet')), false)
    for (const a of net.agents) assert.throws(() => process.kill(a.pid, 0))
  })
})
