import { test } from 'node:test'
import assert from 'node:assert/strict'
import { Host, type HostFiles } from '../../agent/host.js'

function files (map: Record<string, string>): HostFiles {
  return { read: (path) => map[path] }
}

const V1_MOUNTS = [
  '31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755',
  '32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu',
  '39 31 0:36 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory',
  '40 31 0:37 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw'
].join('\n')

test('a v1 CPU quota and memory limit are the device\'s size; the tightest of the group and its parents counts', () => {
  const host = new Host(files({
    '/proc/self/mountinfo': V1_MOUNTS,
    '/proc/self/cgroup': '4:memory:/edge/agent-1\n2:cpu:/edge/agent-1\n0::/',
    '/sys/fs/cgroup/cpu/edge/agent-1/cpu.cfs_quota_us': '30000\n',
    '/sys/fs/cgroup/cpu/edge/agent-1/cpu.cfs_period_us': '100000\n',
    '/sys/fs/cgroup/cpu/edge/cpu.cfs_quota_us': '-1\n',
    '/sys/fs/cgroup/cpu/edge/cpu.cfs_period_us': '100000\n',
    '/sys/fs/cgroup/memory/edge/agent-1/memory.limit_in_bytes': String(512 * 2 ** 20),
    '/sys/fs/cgroup/memory/edge/memory.limit_in_bytes': String(256 * 2 ** 20),
    '/sys/fs/cgroup/memory/edge/agent-1/memory.usage_in_bytes': String(100 * 2 ** 20),
    '/sys/fs/cgroup/memory/memory.limit_in_bytes': '9223372036854771712'
  }))
  assert.deepEqual(host.limits(), { cpus: 0.3, memoryBytes: 256 * 2 ** 20, memoryUsed: 100 * 2 ** 20 })
  const r = host.resources()
  assert.equal(r.cpus, 0.3)
  assert.equal(r.memTotal, 256 * 2 ** 20)
  assert.ok(r.memFree <= 156 * 2 ** 20)
})

test('v2: cpu.max and memory.max; "max" means no limit', () => {
  const mounts = '30 23 0:27 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw'
  const limited = new Host(files({
    '/proc/self/mountinfo': mounts,
    '/proc/self/cgroup': '0::/box',
    '/sys/fs/cgroup/box/cpu.max': '150000 100000\n',
    '/sys/fs/cgroup/box/memory.max': String(2 ** 30),
    '/sys/fs/cgroup/box/memory.current': String(2 ** 28)
  }))
  assert.deepEqual(limited.limits(), { cpus: 1.5, memoryBytes: 2 ** 30, memoryUsed: 2 ** 28 })
  const open = new Host(files({
    '/proc/self/mountinfo': mounts,
    '/proc/self/cgroup': '0::/box',
    '/sys/fs/cgroup/box/cpu.max': 'max 100000\n',
    '/sys/fs/cgroup/box/memory.max': 'max\n'
  }))
  assert.deepEqual(open.limits(), {})
})

test('without cgroups (another OS, a hidden /proc) the machine\'s own size counts', () => {
  const host = new Host(files({}))
  assert.deepEqual(host.limits(), {})
  assert.ok(host.resources().cpus >= 1)
})
