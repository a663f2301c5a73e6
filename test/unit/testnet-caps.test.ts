import { test } from 'node:test'
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { availableParallelism, tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseCpu, parseMemory, parsePerAgent } from '../../cli/commands/testnet.js'
import { applyCaps, cappedCommand, childCgroup, findCgroupRoots, validateCaps, type CgroupHost } from '../../testnet/cgroups.js'

const MiB = 1024 ** 2

test('--cpu takes one value for every agent', () => {
  assert.deepEqual(parsePerAgent('--cpu', '0.3', 3, parseCpu), [0.3, 0.3, 0.3])
})

test('--cpu takes values per agent, leaving the others uncapped', () => {
  assert.deepEqual(parsePerAgent('--cpu', '1:0.5,2:0.3', 3, parseCpu), [0.5, 0.3, undefined])
})

test('--cpu takes a default with exceptions, in any order', () => {
  assert.deepEqual(parsePerAgent('--cpu', '0.3,1:1.0', 3, parseCpu), [1, 0.3, 0.3])
  assert.deepEqual(parsePerAgent('--cpu', '2:1.5, 0.3', 3, parseCpu), [0.3, 1.5, 0.3])
})

test('--memory takes sizes', () => {
  assert.deepEqual(parsePerAgent('--memory', '256MiB,2:1GiB', 2, parseMemory), [256 * MiB, 1024 * MiB])
})

test('bad --cpu and --memory specs say what is wrong in one line', () => {
  const bad = (flag: string, spec: string, message: RegExp): void => {
    assert.throws(() => parsePerAgent(flag, spec, 2, flag === '--cpu' ? parseCpu : parseMemory), (err: Error) => {
      assert.equal(err.name, 'UserError')
      assert.match(err.message, message)
      assert.doesNotMatch(err.message, /\n/)
      return true
    })
  }
  bad('--cpu', 'abc', /--cpu 'abc': not a positive number of CPUs/)
  bad('--cpu', '0', /--cpu '0': not a positive number/)
  bad('--cpu', '-1', /not a positive number/)
  bad('--cpu', '1:', /--cpu '1:': no value for agent 1; use e.g. 1:0.5/)
  bad('--cpu', '9:0.3', /--cpu '9:0.3': there is no agent 9 \(--peers 2\)/)
  bad('--cpu', 'x:0.3', /'x' is not an agent number/)
  bad('--cpu', '0:0.3', /'0' is not an agent number/)
  bad('--cpu', '0.3,0.5', /two values for every agent/)
  bad('--cpu', '1:0.3,1:0.5', /two values for agent 1/)
  bad('--cpu', '0.3,', /an empty item/)
  bad('--memory', 'lots', /--memory 'lots': not a size/)
})

test('caps beyond what the machine has are refused', () => {
  assert.doesNotThrow(() => { validateCaps({ cpu: 0.3, memoryBytes: 256 * MiB }, 'agent 1') })
  assert.throws(() => { validateCaps({ cpu: availableParallelism() + 1 }, 'agent 2') }, { name: 'RangeError', message: /^agent 2: a CPU cap must be from 0.01 to \d+/ })
  assert.throws(() => { validateCaps({ cpu: 0.001 }, 'agent 1') }, { name: 'RangeError' })
  assert.throws(() => { validateCaps({ memoryBytes: 32 * MiB }, 'agent 1') }, { name: 'RangeError', message: /at least 64 MiB/ })
})

/** This machine as the brief describes it: v1 controllers, an empty v2 at /sys/fs/cgroup/unified. */
function hybridHost (v2Mount: string, uid = 0): CgroupHost {
  return {
    uid,
    mountinfo: [
      '31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755',
      '32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime shared:9 - cgroup cgroup rw,cpu',
      '35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory',
      `41 31 0:38 / ${v2Mount} rw,relatime - cgroup2 cgroup2 rw`
    ].join('\n'),
    cgroup: '4:memory:/jobs/7\n1:cpu:/\n0::/\n'
  }
}

test('cgroup v1 hierarchies are used where v2 offers no controllers, under our own group', (t) => {
  const v2 = mkdtempSync(join(tmpdir(), 'cg2-'))
  t.after(() => { rmSync(v2, { recursive: true, force: true }) })
  writeFileSync(join(v2, 'cgroup.controllers'), '\n')
  assert.deepEqual(findCgroupRoots(['cpu', 'memory'], hybridHost(v2)), { version: 1, cpu: '/sys/fs/cgroup/cpu', memory: '/sys/fs/cgroup/memory/jobs/7' })
  assert.deepEqual(findCgroupRoots(['cpu'], hybridHost(v2)), { version: 1, cpu: '/sys/fs/cgroup/cpu' })
})

test('cgroup v2 is preferred where it offers the controllers', (t) => {
  const v2 = mkdtempSync(join(tmpdir(), 'cg2-'))
  t.after(() => { rmSync(v2, { recursive: true, force: true }) })
  writeFileSync(join(v2, 'cgroup.controllers'), 'cpuset cpu io memory pids\n')
  assert.deepEqual(findCgroupRoots(['cpu', 'memory'], hybridHost(v2)), { version: 2, cpu: v2, memory: v2 })
})

test('no controller mounted, or no root, is refused in one line that says what to do', () => {
  const bare: CgroupHost = { uid: 0, mountinfo: '31 23 0:28 / /sys/fs/cgroup rw - tmpfs tmpfs rw', cgroup: '0::/' }
  assert.throws(() => findCgroupRoots(['cpu'], bare), { name: 'CgroupUnavailableError', message: /^no cgroup cpu controller mounted .*or drop --cpu$/ })
  assert.throws(() => findCgroupRoots(['cpu'], { ...bare, uid: 1000 }), { name: 'CgroupPermissionError', message: '--cpu/--memory need root to create cgroups: run as root or drop them' })
})

test('a v2 group gets cpu.max and memory.max, its parents passing the controllers on', (t) => {
  const v2 = mkdtempSync(join(tmpdir(), 'cg2-'))
  t.after(() => { rmSync(v2, { recursive: true, force: true }) })
  writeFileSync(join(v2, 'cgroup.controllers'), 'cpu memory\n')
  const roots = findCgroupRoots(['cpu', 'memory'], hybridHost(v2))
  const group = childCgroup(childCgroup(roots, 'edge-testnet-1'), 'agent-1', { cpu: 0.3, memoryBytes: 256 * MiB })
  applyCaps(group, { cpu: 0.3, memoryBytes: 256 * MiB })
  assert.equal(readFileSync(join(v2, 'cgroup.subtree_control'), 'utf8'), '+cpu +memory')
  assert.equal(readFileSync(join(v2, 'edge-testnet-1', 'cgroup.subtree_control'), 'utf8'), '+cpu +memory')
  assert.equal(readFileSync(join(v2, 'edge-testnet-1', 'agent-1', 'cpu.max'), 'utf8'), '30000 100000')
  assert.equal(readFileSync(join(v2, 'edge-testnet-1', 'agent-1', 'memory.max'), 'utf8'), String(256 * MiB))
})

test('a v1 group gets only the controllers its caps use', () => {
  const parent = { version: 1 as const, cpu: '/cg/cpu/edge-testnet-1', memory: '/cg/memory/edge-testnet-1' }
  assert.deepEqual(childCgroup(parent, 'agent-2', { cpu: 0.5 }), { version: 1, cpu: '/cg/cpu/edge-testnet-1/agent-2' })
})

test('a capped command joins its groups before it runs, keeping its pid', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'cg1-'))
  t.after(() => { rmSync(dir, { recursive: true, force: true }) })
  mkdirSync(join(dir, 'cpu'))
  mkdirSync(join(dir, 'memory'))
  const [command, ...args] = cappedCommand({ version: 1, cpu: join(dir, 'cpu'), memory: join(dir, 'memory') }, [process.execPath]) as [string, ...string[]]
  const run = spawnSync(command, [...args, '-e', 'process.stdout.write(String(process.pid))'], { encoding: 'utf8' })
  assert.equal(run.status, 0, run.stderr)
  assert.equal(readFileSync(join(dir, 'cpu', 'cgroup.procs'), 'utf8').trim(), run.stdout)
  assert.equal(readFileSync(join(dir, 'memory', 'cgroup.procs'), 'utf8').trim(), run.stdout)
  const failed = spawnSync(command, [...args.map(a => a.replace(join(dir, 'cpu'), join(dir, 'gone'))), '-e', '0'], { encoding: 'utf8' })
  assert.equal(failed.status, 125, 'a group it cannot join stops it before it runs')
})
