import { test, after } from 'node:test'
import assert from 'node:assert/strict'
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { request } from 'node:http'
import { join } from 'node:path'
import { AgentClient, ApiError } from '../../cli/client.js'
import { EDGE_AGENT_BIN, isAlive, runAgentCommand, spawnAgent, stopAgent } from '../../testnet/process.js'
import { CLOSES_STDIO_WAT, EDGE_BIN, eventually, example, ROOT, runNode, startAgentIn, wat, type Run, type StartedAgent } from '../helpers.js'

/** One `edge-agent` process at a time: its lifecycle, identity and configuration errors. */
const root = mkdtempSync(join(tmpdir(), 'edge-agent-test-'))
const started: Array<{ pid: number, dataDir: string }> = []
after(async () => {
  for (const a of started) await stopAgent(a.pid, a.dataDir)
  rmSync(root, { recursive: true, force: true })
})

async function runAgent (args: string[], env: NodeJS.ProcessEnv = {}): Promise<Run> {
  return await runNode(EDGE_AGENT_BIN, args, { env })
}

async function start (name: string, args: string[] = [], env: NodeJS.ProcessEnv = {}): Promise<StartedAgent> {
  return await startAgentIn(root, name, args, env, started)
}

test('init creates config, identity and swarm key; a second init keeps the identity', async () => {
  const dataDir = join(root, 'init')
  const out = await runAgentCommand(['init', '--data-dir', dataDir])
  assert.match(out, /^initialised agent 12D3Koo\w+ in /)
  for (const f of ['config.json', 'peer.key', 'swarm.key', 'owner.key', 'roster']) assert.ok(existsSync(join(dataDir, f)), f)
  const key = readFileSync(join(dataDir, 'peer.key'))
  assert.match(await runAgentCommand(['init', '--data-dir', dataDir]), /updated agent 12D3Koo/)
  assert.deepEqual(readFileSync(join(dataDir, 'peer.key')), key)
  const json = JSON.parse(await runAgentCommand(['init', '--json', '--data-dir', dataDir])) as { peerId: string, owner: string, state: string, dataDir: string }
  assert.equal(json.state, 'updated')
  assert.equal(json.dataDir, dataDir)
  assert.match(json.peerId, /^12D3Koo/)
  assert.notEqual(json.owner, json.peerId, 'the owner key is a key of its own')
  const bad = await runAgent(['init', '--data-dir', join(root, 'init-bad'), '--bootstrap', 'nonsense'])
  assert.equal(bad.code, 1)
  assert.match(bad.stderr.trim(), /^edge-agent: error: bad --bootstrap 'nonsense'/)
  assert.equal(existsSync(join(root, 'init-bad')), false)
})

test('init refuses a swarm key file that is not one, and writes nothing', async () => {
  const notKey = join(root, 'not-a-swarm-key')
  writeFileSync(notKey, '{"listen": []}\n')
  const r = await runAgent(['init', '--data-dir', join(root, 'badkey'), '--swarm-key', notKey])
  assert.equal(r.code, 1)
  assert.match(r.stderr.trim(), /^edge-agent: error: .* is not a swarm key/)
  assert.equal(existsSync(join(root, 'badkey')), false)
})

test('start on a fresh data dir initialises it; SIGTERM stops it cleanly; it comes back with the same identity', async () => {
  const a = await start('lifecycle')
  const status = await new AgentClient(a.info.api).status()
  assert.equal(status.peerId, a.info.peerId)
  await stopAgent(a.pid, a.dataDir)
  assert.equal(isAlive(a.pid), false)
  assert.equal(existsSync(join(a.dataDir, 'agent.json')), false, 'runtime file removed on a clean stop')
  const b = await start('lifecycle')
  assert.equal(b.info.peerId, a.info.peerId)
  await stopAgent(b.pid, b.dataDir)
})

test('a lone agent deploys at once and keeps the signed manifest until peers appear', async () => {
  const a = await start('lone')
  const client = new AgentClient(a.info.api)
  const started = Date.now()
  const dep = await client.deploy('echo', readFileSync(join(ROOT, 'examples/echo/echo.wasm')))
  assert.ok(Date.now() - started < 3000, 'no DHT operation waits for peers that are not there')
  assert.equal(dep.shared, false)
  const m = await client.manifest('echo')
  assert.equal(m.source, 'local')
  assert.equal(m.signer, a.info.peerId)
  await assert.rejects(client.manifest('nope'), (err: ApiError) => err.status === 404)
  await stopAgent(a.pid, a.dataDir)
})

test('an agent holds code within its storage quota: a deploy that does not fit is refused with 507 and loses nothing', async () => {
  const echo = readFileSync(join(ROOT, 'examples/echo/echo.wasm'))
  const primes = readFileSync(join(ROOT, 'examples/primes/primes.wasm'))
  const a = await start('quota', ['--storage', String(echo.byteLength + 100)])
  const client = new AgentClient(a.info.api)
  await client.deploy('echo', echo)
  await assert.rejects(client.deploy('primes', primes), (err: ApiError) => {
    assert.equal(err.status, 507)
    assert.match(err.message, /no room for \d+ bytes of code: this agent holds \d+ of its \d+ bytes \(--storage\)/)
    return true
  })
  assert.deepEqual((await client.list()).map(f => f.name), ['echo'])
  assert.equal(Buffer.from((await client.invoke('echo', { input: Buffer.from('still here') })).outputBytes).toString(), 'still here')
  // The same code under another name costs nothing more.
  await client.deploy('echo2', echo)
  await stopAgent(a.pid, a.dataDir)
})

test('trust add, list and remove keep deployer keys in the config', async () => {
  const dataDir = join(root, 'trust')
  const other = join(root, 'other')
  await runAgentCommand(['init', '--data-dir', dataDir, '--quiet'])
  await runAgentCommand(['init', '--data-dir', other, '--quiet'])
  const key = (await runAgentCommand(['init', '--data-dir', other])).match(/agent (12D3Koo\w+)/)?.[1] ?? ''
  assert.match(await runAgentCommand(['trust', 'add', key, '--data-dir', dataDir]), /^trusted 12D3Koo/)
  assert.match(await runAgentCommand(['trust', 'list', '--data-dir', dataDir]), new RegExp(`^deployer ${key}$`, 'm'))
  const listed = JSON.parse(await runAgentCommand(['trust', 'list', '--json', '--data-dir', dataDir])) as { trustedKeys: string[], devices: string[], holdsOwnerKey: boolean }
  assert.deepEqual(listed.trustedKeys, [key])
  // A device that founded its swarm holds the owner key and is the roster's one device.
  assert.equal(listed.holdsOwnerKey, true)
  assert.equal(listed.devices.length, 1)
  await runAgentCommand(['trust', 'remove', key, '--data-dir', dataDir])
  assert.deepEqual((JSON.parse(await runAgentCommand(['trust', 'list', '--json', '--data-dir', dataDir])) as { trustedKeys: string[] }).trustedKeys, [])
  const bad = await runAgent(['trust', 'add', 'not-a-key', '--data-dir', dataDir])
  assert.equal(bad.code, 1)
  assert.match(bad.stderr.trim(), /^edge-agent: error: 'not-a-key' is not an Ed25519 peer id/)
})

test('a bad bootstrap address or a non-loopback API without a token is a one-line error', async () => {
  const bad = await runAgent(['start', '--data-dir', join(root, 'bad1'), '--listen', '/ip4/127.0.0.1/tcp/0', '--api-port', '0', '--no-mdns', '--bootstrap', '/ip4/127.0.0.1/tcp/1'])
  assert.equal(bad.code, 1)
  assert.match(bad.stderr.trim(), /^edge-agent: error: bad bootstrap address '\/ip4\/127\.0\.0\.1\/tcp\/1': no \/p2p\/<peer id>/)
  const open = await runAgent(['start', '--data-dir', join(root, 'bad2'), '--listen', '/ip4/127.0.0.1/tcp/0', '--api-port', '0', '--no-mdns', '--api-host', '0.0.0.0'], { EDGE_API_TOKEN: '' })
  assert.equal(open.code, 1)
  assert.match(open.stderr.trim(), /^edge-agent: error: the API would listen on 0\.0\.0\.0, beyond this device: set a token/)
  // A name that merely starts like a loopback address is a name like any other.
  const named = await runAgent(['start', '--data-dir', join(root, 'bad3'), '--listen', '/ip4/127.0.0.1/tcp/0', '--api-port', '0', '--no-mdns', '--api-host', '127.0.0.1.example'], { EDGE_API_TOKEN: '' })
  assert.equal(named.code, 1)
  assert.match(named.stderr.trim(), /^edge-agent: error: the API would listen on 127\.0\.0\.1\.example, beyond this device: set a token/)
})

test('an unparseable --listen writes nothing; a taken API port or listen address is one line naming it', async (t) => {
  const garbage = join(root, 'garbage')
  const bad = await runAgent(['start', '--data-dir', garbage, '--listen', 'garbage', '--api-port', '0', '--no-mdns'])
  assert.equal(bad.code, 1)
  assert.match(bad.stderr.trim(), /^edge-agent: error: bad --listen 'garbage' \(.*\): use a multiaddr such as \/ip4\/0\.0\.0\.0\/tcp\/4001$/)
  assert.equal(existsSync(garbage), false, 'nothing written for a command line that cannot start')
  const { createServer } = await import('node:net')
  const taken = createServer()
  await new Promise<void>((resolve) => { taken.listen(0, '127.0.0.1', resolve) })
  t.after(() => { taken.close() })
  const port = (taken.address() as { port: number }).port
  const api = await runAgent(['start', '--data-dir', join(root, 'taken-api'), '--listen', '/ip4/127.0.0.1/tcp/0', '--api-port', String(port), '--no-mdns'])
  assert.equal(api.code, 1)
  // The log's info lines come first; the error is the last line.
  assert.equal(api.stderr.trim().split('\n').at(-1), `edge-agent: error: API port ${port} on 127.0.0.1 is in use: is another agent running? Use --api-port`)
  const p2p = await runAgent(['start', '--data-dir', join(root, 'taken-p2p'), '--listen', `/ip4/127.0.0.1/tcp/${port}`, '--api-port', '0', '--no-mdns'])
  assert.equal(p2p.code, 1)
  assert.equal(p2p.stderr.trim().split('\n').at(-1), `edge-agent: error: listen address /ip4/127.0.0.1/tcp/${port} is in use: is another agent running? Use --listen`)
})

test('every start flag may come from its EDGE_ environment variable, and the command line wins', async () => {
  const a = await start('from-env', ['--wasm-slots', '3'], { EDGE_LABELS: 'site=lab,floor=2', EDGE_NO_DOCKER: '1', EDGE_WASM_SLOTS: '5' })
  try {
    const s = await new AgentClient(a.info.api).status()
    assert.deepEqual(s.labels, { site: 'lab', floor: '2' })
    assert.equal(s.docker?.reason, 'turned off (--no-docker)')
    assert.equal(s.runtimes.find(r => r.kind === 'wasm')?.slots, 3)
  } finally {
    await stopAgent(a.pid, a.dataDir)
  }
  const bad = await runAgent(['start', '--data-dir', join(root, 'bad-env'), '--api-port', '0'], { EDGE_REPLICAS: 'many' })
  assert.equal(bad.code, 1)
  assert.equal(bad.stderr.trim(), "edge-agent: error: option '--replicas <n>' value 'many' from env 'EDGE_REPLICAS' is invalid. expected a whole number")
  assert.equal(existsSync(join(root, 'bad-env')), false)
})

test('a data directory in use by another agent is one line, and the running agent keeps its files', async () => {
  const a = await start('locked')
  const second = await runAgent(['start', '--data-dir', a.dataDir, '--listen', '/ip4/127.0.0.1/tcp/0', '--api-port', '0', '--no-mdns'])
  assert.equal(second.code, 1)
  assert.equal(second.stderr.trim().split('\n').at(-1), `edge-agent: error: ${a.dataDir} is in use by another agent (pid ${a.pid}): stop it first, or give this one its own --data-dir`)
  assert.equal((JSON.parse(readFileSync(join(a.dataDir, 'agent.json'), 'utf8')) as { pid: number }).pid, a.pid)
  assert.equal((await new AgentClient(a.info.api).status()).peerId, a.info.peerId)
  // A lock left by a killed agent is taken over.
  process.kill(a.pid, 'SIGKILL')
  await eventually(() => !isAlive(a.pid), 5000, 'the agent to die')
  const b = await start('locked')
  assert.equal(b.info.peerId, a.info.peerId)
  await stopAgent(b.pid, b.dataDir)
})

test('a device with another swarm key, and a bootstrap peer that refuses, are named in the log and in status within seconds', async () => {
  const a = await start('swarm-a')
  const addr = a.info.addrs[0] ?? ''
  const other = join(root, 'swarm-other')
  await runAgentCommand(['init', '--data-dir', other, '--quiet', '--bootstrap', addr, '--bootstrap', '/ip4/127.0.0.1/tcp/1/p2p/12D3KooWDdaFcoDxTqz6428s9Xn6ukyR8T8F4uWvU9EN9jvo5fws'])
  const w = await start('swarm-other')
  const problems = async (api: string): Promise<string[]> => ((await new AgentClient(api).status()).problems ?? []).map(p => p.message)
  const where = addr.replace(/^\/ip4\/([^/]+)\/tcp\/(\d+).*$/, '$1:$2')
  const own = await eventually(async () => {
    const list = await problems(w.info.api)
    if (list.length < 2) throw new Error(`problems so far: ${JSON.stringify(list)}`)
    return list
  }, 15_000, 'the wrong-key device to name both problems')
  assert.ok(own.includes(`${where} refused the swarm key: was this device initialised with the swarm's key? (edge-agent init --join TOKEN)`), own.join('\n'))
  assert.ok(own.includes('bootstrap peer 127.0.0.1:1 refused the connection: is its agent running, and listening on that port?'), own.join('\n'))
  await eventually(async () => (await problems(a.info.api)).includes('a device at 127.0.0.1 failed the swarm-key handshake (it holds another swarm\'s key, or none): refused'), 10_000, 'the right-key device to name the stranger')
  const status = await runNode(EDGE_BIN, ['--agent', w.info.api, 'status'])
  assert.match(status.stdout, /^peers {6}none: .*refused/m)
  assert.match(readFileSync(join(root, 'swarm-other.log'), 'utf8'), /warn +agent: .*refused the swarm key/)
  assert.equal((await new AgentClient(w.info.api).status()).peers, 0)
  // Not ready while it has bootstrap peers and none answers.
  const ready = await fetch(`${w.info.api}/readyz`)
  assert.equal(ready.status, 503)
  assert.match(((await ready.json()) as { reasons: string[] }).reasons.join(), /^no peers yet: /)
})

test('with a token the API refuses requests that lack it', async () => {
  const a = await start('token', [], { EDGE_API_TOKEN: 's3cret' })
  const saved = process.env.EDGE_API_TOKEN
  try {
    delete process.env.EDGE_API_TOKEN
    await assert.rejects(new AgentClient(a.info.api).status(), (err: ApiError) => err.status === 401)
    process.env.EDGE_API_TOKEN = 's3cret'
    assert.equal((await new AgentClient(a.info.api).status()).peerId, a.info.peerId)
  } finally {
    if (saved === undefined) delete process.env.EDGE_API_TOKEN
    else process.env.EDGE_API_TOKEN = saved
    await stopAgent(a.pid, a.dataDir)
  }
})

/** One request with exactly these headers (node:http sets only Host, unless told otherwise); `json` is false when the answer is not JSON. */
async function raw (api: string, method: string, path: string, headers: Record<string, string>, body: string | Buffer = ''): Promise<{ status: number, json: boolean, body: { error?: { name?: string, message?: string } } }> {
  return await new Promise((resolve, reject) => {
    const req = request(`${api}${path}`, { method, headers: { 'content-length': String(Buffer.byteLength(body)), ...headers } }, (res) => {
      const chunks: Buffer[] = []
      res.on('data', (c: Buffer) => chunks.push(c))
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8')
        try {
          resolve({ status: res.statusCode ?? 0, json: true, body: JSON.parse(text === '' ? '{}' : text) })
        } catch {
          resolve({ status: res.statusCode ?? 0, json: false, body: {} })
        }
      })
    })
    req.on('error', reject)
    req.end(body)
  })
}

test('the loopback API refuses what a web page could send: another Host, another origin, a form\'s body type', async () => {
  const a = await start('web')
  try {
    const client = new AgentClient(a.info.api)
    await client.deploy('echo', readFileSync(join(ROOT, 'examples/echo/echo.wasm')))
    const port = new URL(a.info.api).port
    const invoke = JSON.stringify({ input: Buffer.from('hi').toString('base64') })
    // DNS rebinding: a page of attacker.example whose name now resolves to 127.0.0.1.
    const rebound = await raw(a.info.api, 'PUT', '/v1/functions/evil', { host: `attacker.example:${port}`, 'content-type': 'application/octet-stream' }, 'not wasm')
    assert.equal(rebound.status, 403)
    assert.match(rebound.body.error?.message ?? '', /^request for host 'attacker\.example:\d+' refused: this agent's API answers requests for localhost or 127\.0\.0\.1 only/)
    assert.equal((await raw(a.info.api, 'GET', '/v1/status', { host: `attacker.example:${port}` })).status, 403, 'nor can it read')
    // A cross-site form or fetch: another origin, text/plain.
    const crossSite = await raw(a.info.api, 'POST', '/v1/functions/echo/invoke', { origin: 'http://evil.example', 'content-type': 'text/plain' }, invoke)
    assert.equal(crossSite.status, 403)
    assert.match(crossSite.body.error?.message ?? '', /^request from the web page at http:\/\/evil\.example refused/)
    // Without an Origin (a page's no-cors request may omit it), the body type still gives it away.
    const form = await raw(a.info.api, 'POST', '/v1/functions/echo/invoke', { 'content-type': 'text/plain' }, invoke)
    assert.equal(form.status, 415)
    assert.equal(form.body.error?.message, "POST takes a body of type application/json, not 'text/plain'")
    assert.equal((await raw(a.info.api, 'PUT', '/v1/functions/evil', { 'content-type': 'multipart/form-data; boundary=x' }, 'x')).status, 415)
    // Nothing of it ran or was deployed.
    assert.deepEqual(await client.logs({ name: 'echo' }), [])
    assert.deepEqual((await client.list()).map(f => f.name), ['echo'])
    // The agent's own page (same origin), localhost, and the CLI's requests are answered.
    const own = await raw(a.info.api, 'POST', '/v1/functions/echo/invoke', { origin: a.info.api, 'content-type': 'application/json' }, invoke)
    assert.equal(own.status, 200, JSON.stringify(own.body))
    assert.equal((await raw(a.info.api, 'GET', '/v1/status', { host: `localhost:${port}` })).status, 200)
    assert.equal((await client.logs({ name: 'echo' })).length, 1)
  } finally {
    await stopAgent(a.pid, a.dataDir)
  }
})

test('/metrics has calls by function, placement and outcome, their durations, cold starts, runtimes, build info and libp2p\'s own; /healthz and /readyz answer', async () => {
  const a = await start('metrics')
  const client = new AgentClient(a.info.api)
  try {
    await client.deploy('echo', example('echo'))
    await client.invoke('echo', { input: Buffer.from('x') })
    await client.invoke('echo', { input: Buffer.from('y') })
    await assert.rejects(client.invoke('made-up'))
    const body = await (await fetch(`${a.info.api}/metrics`)).text()
    // Every sample line is in Prometheus' text format.
    for (const line of body.split('\n').filter(l => l !== '' && !l.startsWith('#'))) {
      assert.match(line, /^[a-zA-Z_:][a-zA-Z0-9_:]*(\{([a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\]|\\.)*",?)*\})? (?:-?[0-9.e+-]+|[Nn]a[Nn]|[+-]Inf)$/, line)
    }
    assert.match(body, /^edge_calls_total\{function="echo",placement="local",outcome="ok"\} 2$/m)
    assert.match(body, /^edge_calls_total\{function="\(unknown\)",placement="none",outcome="not_found"\} 1$/m)
    assert.match(body, /^edge_invocation_duration_seconds_count\{function="\(unknown\)",placement="none",outcome="not_found"\} 1$/m)
    assert.match(body, /^edge_invocation_duration_seconds_bucket\{le="\+Inf",function="echo",placement="local",outcome="ok"\} 2$/m)
    assert.match(body, /^edge_cold_starts_total\{function="echo",runtime="wasm"\} 1$/m)
    assert.match(body, /^edge_slots\{runtime="wasm"\} [1-9]/m)
    assert.match(body, /^edge_build_info\{version="\d+\.\d+\.\d+",node="v\d+[^"]*",platform="linux",arch="[^"]+"\} 1$/m)
    assert.match(body, /^libp2p_[a-z_]+/m, 'libp2p\'s own metrics')
    assert.deepEqual(await (await fetch(`${a.info.api}/healthz`)).json(), { ok: true })
    const ready = await fetch(`${a.info.api}/readyz`)
    assert.equal(ready.status, 200)
    assert.deepEqual(await ready.json(), { ready: true, reasons: [], peers: 0 })
  } finally {
    await stopAgent(a.pid, a.dataDir)
  }
})

test('edge logs -f prints the newest calls, then each call as it ends, until Ctrl-C', async () => {
  const a = await start('follow')
  const client = new AgentClient(a.info.api)
  try {
    await client.deploy('echo', example('echo'))
    await client.invoke('echo', { input: Buffer.from('before') })
    const { spawn } = await import('node:child_process')
    const follower = spawn(process.execPath, [EDGE_BIN, '--agent', a.info.api, '--json', 'logs', '-f', '-n', '5', 'echo'], { stdio: ['ignore', 'pipe', 'pipe'] })
    let out = ''
    follower.stdout.on('data', (c: Buffer) => { out += c.toString('utf8') })
    const exited = new Promise<number | null>((resolve) => { follower.once('exit', (code) => { resolve(code) }) })
    try {
      await eventually(() => out.split('\n').length >= 2, 10_000, 'the call made before to be printed')
      await client.invoke('echo', { input: Buffer.from('after') })
      await assert.rejects(client.invoke('nope'))
      const lines = await eventually(() => {
        const l = out.trim().split('\n')
        return l.length >= 2 ? l.map(x => JSON.parse(x) as { name: string, outcome: string }) : undefined
      }, 10_000, 'the call made while following to be printed')
      assert.deepEqual(lines.map(l => [l.name, l.outcome]), [['echo', 'ok'], ['echo', 'ok']])
    } finally {
      follower.kill('SIGINT')
    }
    assert.equal(await exited, 0)
  } finally {
    await stopAgent(a.pid, a.dataDir)
  }
})

test('the HTTP API answers whatever it is sent with a status below 500 and JSON, and carries on (fuzzed, seeded)', async () => {
  const { default: fc } = await import('fast-check')
  const a = await start('fuzz')
  try {
    await new AgentClient(a.info.api).deploy('echo', readFileSync(join(ROOT, 'examples/echo/echo.wasm')))
    const segment = fc.oneof(fc.string({ maxLength: 40 }), fc.constantFrom('echo', 'echo@1', 'echo@x', '..', '%', '%2F', '%40', 'a'.repeat(300), '\u00e9\u{1F600}', ''))
    const path = fc.oneof(
      segment.map(s => `/v1/functions/${encodeURIComponent(s)}`),
      fc.tuple(segment, fc.constantFrom('invoke', 'manifest', 'prewarm', 'version', '')).map(([s, r]) => `/v1/functions/${s.replace(/[^\x21-\x7e]/g, '_')}/${r}`),
      fc.tuple(segment, fc.integer({ min: -5, max: 120 })).map(([s, w]) => `/v1/requests/${encodeURIComponent(s)}?wait=${w}`),
      fc.string({ maxLength: 30 }).map(s => `/v1/logs?limit=${encodeURIComponent(s)}&function=${encodeURIComponent(s)}`),
      fc.constantFrom('/v1/status', '/v1/peers', '/v1/functions', '/v1/requests', '/metrics', '/', '/v2/x'),
      fc.string({ maxLength: 60 }).map(s => '/' + s.replace(/[^\x21-\x7e]/g, '_'))
    )
    const body = fc.oneof(fc.json().map(j => Buffer.from(j)), fc.uint8Array({ maxLength: 4096 }).map(b => Buffer.from(b)), fc.constant(Buffer.alloc(0)),
      fc.record({ input: fc.oneof(fc.string(), fc.integer()), params: fc.anything(), policy: fc.string({ maxLength: 12 }), timeoutMs: fc.oneof(fc.integer(), fc.double()), async: fc.anything() }, { requiredKeys: [] }).map(o => Buffer.from(JSON.stringify(o) ?? '')))
    const request = fc.record({
      method: fc.constantFrom('GET', 'POST', 'PUT', 'DELETE', 'PATCH', 'OPTIONS'),
      path,
      type: fc.constantFrom('application/json', 'application/octet-stream', 'text/plain', 'application/json; charset=utf-8', ''),
      query: fc.constantFrom('', '?memory=16MiB', '?timeout=-1s', '?runtime=node', '?runtime=nope', '?env=%7B', '?container=%7B%7D', '?memory=1e999'),
      body
    })
    const statuses: number[] = []
    await fc.assert(fc.asyncProperty(request, async (r) => {
      const url = r.path.includes('?') ? r.path : r.path + r.query
      const headers: Record<string, string> = r.type === '' ? {} : { 'content-type': r.type }
      const res = await raw(a.info.api, r.method, url, headers, r.body).catch((err: Error) => ({ status: -1, json: false, body: { error: { message: err.message } } }))
      statuses.push(res.status)
      if (res.status === -1 || res.status >= 500 || (!res.json && !url.startsWith('/metrics'))) throw new Error(`${r.method} ${url} → ${res.status}: ${JSON.stringify(res.body)}`)
      return true
    }), { seed: 20261201, numRuns: 600 })
    assert.ok(statuses.some(s => s >= 400) && statuses.some(s => s < 300), 'both refusals and answers were seen')
    assert.equal((await new AgentClient(a.info.api).status()).peerId, a.info.peerId)
    assert.equal(isAlive(a.pid), true)
  } finally {
    await stopAgent(a.pid, a.dataDir)
  }
})

test('a function that closes its stdio closes its own: the agent keeps answering, and keeps writing its own log', async () => {
  const a = await start('stdio')
  try {
    const client = new AgentClient(a.info.api)
    await client.deploy('closer', await wat(CLOSES_STDIO_WAT))
    await client.deploy('echo', readFileSync(join(ROOT, 'examples/echo/echo.wasm')))
    for (let i = 0; i < 2; i++) {
      await assert.rejects(client.invoke('closer'), (err: ApiError) => {
        assert.equal(err.status, 500)
        assert.match(err.message, /exited with code 8\b/, 'EBADF: the call\'s own stdout was closed')
        return true
      })
    }
    assert.equal(Buffer.from((await client.invoke('echo', { input: Buffer.from('still mine') })).outputBytes).toString(), 'still mine')
  } finally {
    await stopAgent(a.pid, a.dataDir)
  }
  // The agent's stdout (its log file here) still took what it wrote as it stopped.
  assert.match(readFileSync(join(root, 'stdio.log'), 'utf8'), /^SIGTERM: stopping$/m)
})
