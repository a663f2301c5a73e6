import { randomBytes } from 'node:crypto'
import { existsSync, mkdirSync, readFileSync, rmdirSync, writeFileSync } from 'node:fs'
import { availableParallelism, totalmem } from 'node:os'
import { dirname, join } from 'node:path'
import { parseMountinfo, parseProcCgroup, under } from '../agent/host.js'

/**
 * Caps an agent process at a share of the CPU and an amount of memory, as a smaller device would
 * have, with a cgroup per agent: `<own cgroup>/edge-testnet-<id>/agent-<k>`. Prefers cgroup v2
 * where it is mounted with the controllers, else v1's `cpu` and `memory` hierarchies. Groups nest
 * under the cgroup of the process that makes them, so that they stay inside whatever limits it has.
 */

export interface Caps {
  /** CPUs, a fraction of one or more (0.3, 1.5): a CFS quota per 100 ms period. */
  cpu?: number
  memoryBytes?: number
}

/** One group: a v2 directory (`cpu` and `memory` are the same), or a v1 directory per controller. */
export interface CgroupDirs {
  version: 1 | 2
  cpu?: string
  memory?: string
}

export type Controller = 'cpu' | 'memory'

export const CPU_PERIOD_US = 100_000
export const MIN_MEMORY_BYTES = 64 * 1024 ** 2
/** CFS takes no quota under 1 ms per period. */
const MIN_CPU = 0.01
const MiB = 1024 ** 2

export class CgroupPermissionError extends Error {
  override name = 'CgroupPermissionError'
}

export class CgroupUnavailableError extends Error {
  override name = 'CgroupUnavailableError'
}

export class CgroupBusyError extends Error {
  override name = 'CgroupBusyError'
}

const NEED_ROOT = '--cpu/--memory need root to create cgroups: run as root or drop them'

/** Throws a RangeError unless `caps` are something this machine can give one agent (`who` names it). */
export function validateCaps (caps: Caps, who: string): void {
  const cpus = availableParallelism()
  if (caps.cpu !== undefined && !(Number.isFinite(caps.cpu) && caps.cpu >= MIN_CPU && caps.cpu <= cpus)) {
    throw new RangeError(`${who}: a CPU cap must be from ${MIN_CPU} to ${cpus} (this machine's CPUs), not ${caps.cpu}`)
  }
  if (caps.memoryBytes !== undefined) {
    const m = caps.memoryBytes
    if (!Number.isInteger(m) || m < MIN_MEMORY_BYTES) throw new RangeError(`${who}: a memory cap must be at least ${MIN_MEMORY_BYTES / MiB} MiB, not ${m} bytes`)
    if (m > totalmem()) throw new RangeError(`${who}: a memory cap of ${Math.round(m / MiB)} MiB is more than this machine's ${Math.round(totalmem() / MiB)} MiB`)
  }
}

/** What the kernel says about this process's cgroups; a parameter so that tests can describe another machine. */
export interface CgroupHost {
  /** The text of /proc/self/mountinfo. */
  mountinfo: string
  /** The text of /proc/self/cgroup. */
  cgroup: string
  uid: number | undefined
}

export function procHost (): CgroupHost {
  const read = (path: string): string => { try { return readFileSync(path, 'utf8') } catch { return '' } }
  return { mountinfo: read('/proc/self/mountinfo'), cgroup: read('/proc/self/cgroup'), uid: process.getuid?.() }
}

/**
 * Where groups with the `need`ed controllers can be made: this process's own cgroup, in v2 if it
 * offers them, else in the v1 hierarchies. Touches nothing. Refuses without root.
 */
export function findCgroupRoots (need: Controller[], host: CgroupHost = procHost()): CgroupDirs {
  if (host.uid !== 0) throw new CgroupPermissionError(NEED_ROOT)
  const mounts = parseMountinfo(host.mountinfo)
  const own = parseProcCgroup(host.cgroup)
  for (const m of mounts.filter(m => m.fstype === 'cgroup2')) {
    const dir = under(m.mountpoint, own.get('') ?? '/', m.root)
    const offered = words(join(dir, 'cgroup.controllers'))
    if (need.every(c => offered.includes(c))) return pick({ version: 2, cpu: dir, memory: dir }, need)
  }
  const v1: CgroupDirs = { version: 1 }
  for (const c of need) {
    const m = mounts.find(m => m.fstype === 'cgroup' && m.options.includes(c))
    if (m === undefined) {
      throw new CgroupUnavailableError(`no cgroup ${c} controller mounted (neither cgroup v2 offering it nor a v1 '${c}' hierarchy): mount one, e.g. 'mount -t cgroup -o ${c} cgroup /sys/fs/cgroup/${c}', or drop --${c}`)
    }
    v1[c] = under(m.mountpoint, own.get(c) ?? '/', m.root)
  }
  return v1
}

/** The group `name` inside `parent`, with only the controllers that `caps` use (all of the parent's without). Touches nothing. */
export function childCgroup (parent: CgroupDirs, name: string, caps?: Caps): CgroupDirs {
  const child: CgroupDirs = { version: parent.version }
  if (parent.cpu !== undefined && (caps === undefined || caps.cpu !== undefined)) child.cpu = join(parent.cpu, name)
  if (parent.memory !== undefined && (caps === undefined || caps.memoryBytes !== undefined)) child.memory = join(parent.memory, name)
  return child
}

/** A name for one testnet's group, unlike any other testnet's. */
export function testnetCgroupName (): string {
  return `edge-testnet-${process.pid}-${randomBytes(3).toString('hex')}`
}

/** Makes `group` (and its parents) where missing and writes the limits of `caps` into it. */
export function applyCaps (group: CgroupDirs, caps: Caps): void {
  const controllers: Controller[] = [...(caps.cpu !== undefined ? ['cpu' as const] : []), ...(caps.memoryBytes !== undefined ? ['memory' as const] : [])]
  for (const c of controllers) {
    const dir = group[c]
    if (dir === undefined) throw new Error(`cgroup for ${c} missing in ${JSON.stringify(group)}`)
    guarded(dir, () => { ensureGroup(dir, group.version === 2 ? controllers : []) })
  }
  if (caps.cpu !== undefined) {
    const dir = group.cpu as string
    const quota = Math.round(caps.cpu * CPU_PERIOD_US)
    guarded(dir, () => {
      if (group.version === 2) writeFileSync(join(dir, 'cpu.max'), `${quota} ${CPU_PERIOD_US}`)
      else {
        writeFileSync(join(dir, 'cpu.cfs_period_us'), String(CPU_PERIOD_US))
        writeFileSync(join(dir, 'cpu.cfs_quota_us'), String(quota))
      }
    })
  }
  if (caps.memoryBytes !== undefined) {
    const dir = group.memory as string
    guarded(dir, () => { writeFileSync(join(dir, group.version === 2 ? 'memory.max' : 'memory.limit_in_bytes'), String(caps.memoryBytes)) })
  }
}

/**
 * `command` prefixed so that the process it starts is in `group` from its first instruction: a
 * shell writes its own pid into each group's cgroup.procs, then execs the command (same pid).
 */
export function cappedCommand (group: CgroupDirs, command: string[]): string[] {
  const join = 'while [ "$1" != -- ]; do echo $$ > "$1" || exit 125; shift; done; shift; exec "$@"'
  return ['/bin/sh', '-c', join, 'sh', ...cgroupDirs(group).map(d => `${d}/cgroup.procs`), '--', ...command]
}

/** The directories of `group`, each once. */
export function cgroupDirs (group: CgroupDirs | undefined): string[] {
  if (group === undefined) return []
  return [...new Set([group.cpu, group.memory].filter((d): d is string => d !== undefined))]
}

/** The pids in `dir`'s cgroup.procs ([] if it is gone). */
export function cgroupPids (dir: string): number[] {
  return words(join(dir, 'cgroup.procs')).map(Number)
}

/**
 * Removes the group directories `dirs`, in order (children first). A group is busy until its last
 * process is reaped, so an EBUSY is retried for `timeoutMs`; those that are gone already are fine.
 */
export async function removeCgroups (dirs: string[], timeoutMs = 5000): Promise<void> {
  for (const dir of dirs) {
    const until = Date.now() + timeoutMs
    while (true) {
      try {
        rmdirSync(dir)
        break
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code
        if (code === 'ENOENT') break
        if (code === 'EBUSY' && Date.now() < until) { await new Promise(resolve => setTimeout(resolve, 50)); continue }
        if (code === 'EBUSY') throw new CgroupBusyError(`cgroup ${dir} still holds processes ${cgroupPids(dir).join(', ')}: stop them and run 'edge testnet down' again`, { cause: err })
        if (code === 'EACCES' || code === 'EPERM') throw new CgroupPermissionError(`cannot remove cgroup ${dir} (${code}): run as root`, { cause: err })
        throw err
      }
    }
  }
}

/** Makes `dir` and its parents; in v2, each parent first passes `controllers` on to its children. */
function ensureGroup (dir: string, controllers: Controller[]): void {
  const parent = dirname(dir)
  if (!existsSync(parent)) ensureGroup(parent, controllers)
  if (controllers.length > 0) delegate(parent, controllers)
  if (!existsSync(dir)) mkdirSync(dir)
}

/** v2: enables `controllers` for the children of `dir`, first in its parents if `dir` lacks them. */
function delegate (dir: string, controllers: Controller[]): void {
  const offered = words(join(dir, 'cgroup.controllers'))
  const lacking = controllers.filter(c => !offered.includes(c))
  if (lacking.length > 0) {
    if (!existsSync(join(dirname(dir), 'cgroup.controllers'))) throw new CgroupUnavailableError(`cgroup v2 does not offer ${lacking.join(', ')} in ${dir}: drop --${lacking.join('/--')}`)
    delegate(dirname(dir), lacking)
  }
  const enabled = words(join(dir, 'cgroup.subtree_control'))
  const missing = controllers.filter(c => !enabled.includes(c))
  if (missing.length === 0) return
  try {
    writeFileSync(join(dir, 'cgroup.subtree_control'), missing.map(c => `+${c}`).join(' '))
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EBUSY') throw err
    // v2's rule: a group with processes of its own cannot pass controllers on to children.
    throw new CgroupUnavailableError(`cgroup v2 group ${dir} holds processes, so it cannot give ${missing.join(', ')} to child groups: start the testnet from a group of its own, or drop --cpu/--memory`, { cause: err })
  }
}

/** Runs `write` on the group `dir`, turning the kernel's refusals into what the user can act on. */
function guarded (dir: string, write: () => void): void {
  try {
    write()
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code
    if (code === 'EACCES' || code === 'EPERM' || code === 'EROFS') throw new CgroupPermissionError(`cannot write cgroup ${dir} (${code}): ${NEED_ROOT}`, { cause: err })
    if (code === 'ENOENT') throw new CgroupUnavailableError(`cgroup ${dir} lacks a controller's files: drop --cpu/--memory`, { cause: err })
    throw err
  }
}

function words (file: string): string[] {
  try {
    return readFileSync(file, 'utf8').split(/\s+/).filter(w => w !== '')
  } catch {
    return []
  }
}

function pick (dirs: CgroupDirs, need: Controller[]): CgroupDirs {
  const out: CgroupDirs = { version: dirs.version }
  for (const c of need) out[c] = dirs[c]
  return out
}
