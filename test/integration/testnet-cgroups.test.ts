import { describe, test, after } from 'node:test'
import assert from 'node:assert/strict'
import { spawn, spawnSync } from 'node:child_process'
import { chmodSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { up, Testnet, type TestnetAgent } from '../../testnet/index.js'
import { cgroupDirs, findCgroupRoots, removeCgroups, type CgroupDirs } from '../../testnet/cgroups.js'
import { EDGE_BIN, ROOT } from '../helpers.js'

const MiB = 1024 ** 2
const NOBODY = 65534

/** Why the cgroup tests cannot run here (false if they can); in CI that fails them instead. */
function cgroupsSkip (): string | false {
  let why: string | false = false
  if (process.getuid?.() !== 0) why = 'capping agents with cgroups needs root'
  else {
    try {
      findCgroupRoots(['cpu', 'memory'])
    } catch (err) {
      why = (err as Error).message
    }
  }
  if (why !== false && process.env.CI === 'true') throw new Error(why)
  return why
}

const skip = cgroupsSkip()

function read (dir: string, file: string): string {
  return readFileSync(join(dir, file), 'utf8').trim()
}

/** The CPU quota of a group as `quota period`, in v2's form whatever the version. */
function cpuMax (g: CgroupDirs): string {
  const dir = g.cpu as string
  return g.version === 2 ? read(dir, 'cpu.max') : `${read(dir, 'cpu.cfs_quota_us')} ${read(dir, 'cpu.cfs_period_us')}`
}

function memoryMax (g: CgroupDirs): number {
  return Number(read(g.memory as string, g.version === 2 ? 'memory.max' : 'memory.limit_in_bytes'))
}

/** True if agent `a`'s process, and every thread of it, is in each of its groups. */
function isIn (a: TestnetAgent): boolean {
  const tids = readdirSync(`/proc/${a.pid}/task`)
  return cgroupDirs(a.cgroup).every(dir => {
    const procs = read(dir, 'cgroup.procs').split('\n')
    const threads = read(dir, a.cgroup?.version === 2 ? 'cgroup.threads' : 'tasks').split('\n')
    return procs.includes(String(a.pid)) && tids.every(t => threads.includes(t))
  })
}

describe('agents capped like smaller devices (cgroups)', { skip }, () => {
  let net: Testnet | undefined
  let made: string[] = []

  after(async () => {
    await net?.down().catch(() => {})
    // Whatever a failure left behind: our groups must not outlive the test.
    await removeCgroups(made.filter(d => existsSync(d))).catch(() => {})
  })

  test('each agent runs in a group with its own CPU and memory caps, kept across a restart and removed by down', async () => {
    net = await up({ peers: 2, cpu: (k) => k === 1 ? 0.3 : 0.5, memoryBytes: (k) => k === 1 ? 256 * MiB : undefined })
    const [a1, a2] = [net.agent(1), net.agent(2)]
    made = [...cgroupDirs(a1.cgroup), ...cgroupDirs(a2.cgroup), ...cgroupDirs(net.state.cgroup)]
    assert.deepEqual(a1.caps, { cpu: 0.3, memoryBytes: 256 * MiB })
    assert.deepEqual(a2.caps, { cpu: 0.5 })
    assert.ok(a1.cgroup !== undefined && a2.cgroup !== undefined)
    assert.equal(cpuMax(a1.cgroup), '30000 100000')
    assert.equal(memoryMax(a1.cgroup), 256 * MiB)
    assert.equal(cpuMax(a2.cgroup), '50000 100000')
    if (a2.cgroup.version === 1) assert.equal(a2.cgroup.memory, undefined, 'no memory group without a memory cap')
    assert.ok(isIn(a1), `agent 1 (pid ${a1.pid}) and its threads are in ${cgroupDirs(a1.cgroup).join(', ')}`)
    assert.ok(isIn(a2), `agent 2 (pid ${a2.pid}) and its threads are in ${cgroupDirs(a2.cgroup).join(', ')}`)
    // The groups of one testnet sit under one group of its own.
    for (const dir of cgroupDirs(a1.cgroup)) assert.match(dir, /\/edge-testnet-\d+-[0-9a-f]+\/agent-1$/)

    // The agents see their caps as their device's size: slots, status and adverts follow them.
    const s1 = await net.client(1).status()
    assert.equal(s1.cpus, 0.3)
    assert.equal(s1.memTotal, 256 * MiB)
    assert.equal(s1.runtimes.find(r => r.kind === 'wasm')?.slots, 1, 'one WASM slot under a 0.3 CPU quota')
    const seen = (await net.client(2).peers()).find(p => p.peerId === a1.peerId)
    assert.equal(seen?.cpus, 1)

    const saved = Testnet.load(net.state.dir)
    assert.deepEqual(saved?.agent(1).caps, a1.caps)
    assert.deepEqual(saved?.agent(1).cgroup, a1.cgroup)

    const before = a1.pid
    await net.stop(1)
    await net.start(1)
    assert.notEqual(net.agent(1).pid, before)
    assert.ok(isIn(net.agent(1)), 'the restarted agent is in the same group')
    assert.equal(cpuMax(a1.cgroup), '30000 100000')
    assert.equal(memoryMax(a1.cgroup), 256 * MiB)

    await net.down()
    net = undefined
    for (const dir of made) assert.equal(existsSync(dir), false, `${dir} is removed`)
  })
})

describe('caps without root', () => {
  /** Why the CLI cannot be run as nobody here (false if it can). */
  function nobodySkip (): string | false {
    if (skip !== false) return skip
    const probe = spawnSync(process.execPath, ['-e', `require('node:fs').accessSync(${JSON.stringify(EDGE_BIN)}, require('node:fs').constants.R_OK)`], { uid: NOBODY, gid: NOBODY, cwd: '/' })
    return probe.status === 0 ? false : `uid ${NOBODY} cannot read ${EDGE_BIN}: ${probe.stderr.toString().trim()}`
  }

  test('edge testnet up --cpu refuses in one line and starts nothing', { skip: nobodySkip() }, async () => {
    const dir = mkdtempSync(join(tmpdir(), 'edge-nobody-'))
    // Writable by nobody, so that only the refusal keeps a testnet from appearing here.
    chmodSync(dir, 0o777)
    const home = join(dir, 'testnet')
    try {
      const run = await new Promise<{ code: number | null, stderr: string, pid: number }>((resolve, reject) => {
        const child = spawn(process.execPath, [EDGE_BIN, 'testnet', 'up', '--peers', '1', '--cpu', '0.3'], {
          uid: NOBODY, gid: NOBODY, cwd: ROOT, env: { ...process.env, EDGE_TESTNET_HOME: home, HOME: dir }, stdio: ['ignore', 'ignore', 'pipe']
        })
        let stderr = ''
        child.stderr.on('data', (d: Buffer) => { stderr += d.toString() })
        child.on('error', reject)
        child.on('exit', (code) => { resolve({ code, stderr, pid: child.pid ?? 0 }) })
      })
      assert.equal(run.code, 1)
      const lines = run.stderr.trim().split('\n')
      assert.equal(lines.length, 1, run.stderr)
      assert.match(lines[0] ?? '', /^edge: error: .*root/)
      assert.equal(existsSync(join(home, 'testnet.json')), false)
      const agents = readdirSync('/proc').filter(p => /^\d+$/.test(p)).filter(p => {
        try { return readFileSync(`/proc/${p}/cmdline`, 'utf8').includes(home) } catch { return false }
      })
      assert.deepEqual(agents, [], 'no agent process started')
      const roots = findCgroupRoots(['cpu'])
      assert.deepEqual(readdirSync(roots.cpu as string).filter(n => n.startsWith(`edge-testnet-${run.pid}-`)), [], 'no cgroup made')
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })
})
