import { readFileSync } from 'node:fs'
import { availableParallelism, freemem, totalmem } from 'node:os'
import { dirname, join } from 'node:path'

/**
 * What this device gives the agent: CPUs and memory, as the cgroup it runs in limits them (a
 * container with --cpus, a systemd slice, a testnet's `--cpu 0.3`), else the whole machine's.
 */
export interface HostResources {
  /** CPUs, possibly a fraction (0.3 under a 30 % quota). */
  cpus: number
  memTotal: number
  memFree: number
}

export interface Mount { root: string, mountpoint: string, fstype: string, options: string[] }

/** The lines of /proc/self/mountinfo: `id parent dev root mountpoint opts [optional…] - fstype source superopts`. */
export function parseMountinfo (text: string): Mount[] {
  const unescape = (s: string): string => s.replace(/\\([0-7]{3})/g, (_m, o: string) => String.fromCharCode(parseInt(o, 8)))
  const mounts: Mount[] = []
  for (const line of text.split('\n')) {
    const [left, right] = line.split(' - ')
    const l = left?.split(' ') ?? []
    const r = right?.split(' ') ?? []
    if (l.length < 5 || r.length < 3) continue
    mounts.push({ root: unescape(l[3] as string), mountpoint: unescape(l[4] as string), fstype: r[0] as string, options: (r[2] as string).split(',') })
  }
  return mounts
}

/** /proc/self/cgroup: controller → own path; v2's line (`0::/path`) under ''. */
export function parseProcCgroup (text: string): Map<string, string> {
  const own = new Map<string, string>()
  for (const line of text.split('\n')) {
    const m = /^\d+:([^:]*):(.*)$/.exec(line)
    if (m === null) continue
    for (const c of (m[1] as string).split(',')) own.set(c, m[2] as string)
  }
  return own
}

/** Where the group `path` is, in a hierarchy whose `root` is mounted at `mountpoint` (the mount itself if outside it). */
export function under (mountpoint: string, path: string, root: string): string {
  const rel = root === '/' ? path : path.startsWith(`${root}/`) ? path.slice(root.length) : ''
  return join(mountpoint, rel).replace(/(.)\/+$/, '$1')
}

export interface HostFiles {
  read: (path: string) => string | undefined
}

const realFiles: HostFiles = {
  read: (path) => { try { return readFileSync(path, 'utf8') } catch { return undefined } }
}

/** The smallest limit `limitAt` finds in `dir` and its parents up to the hierarchy's mountpoint. */
function tightest (dir: string, mountpoint: string, limitAt: (dir: string) => number | undefined): number | undefined {
  let best: number | undefined
  for (let d = dir; ; d = dirname(d)) {
    const v = limitAt(d)
    if (v !== undefined && (best === undefined || v < best)) best = v
    if (d === mountpoint || d === dirname(d) || !d.startsWith(mountpoint)) break
  }
  return best
}

interface Dirs { v2?: { dir: string, mountpoint: string }, cpu?: { dir: string, mountpoint: string }, memory?: { dir: string, mountpoint: string } }

/** Where this process's cgroups are, in v2 and in v1's cpu and memory hierarchies. */
function ownDirs (files: HostFiles): Dirs {
  const mounts = parseMountinfo(files.read('/proc/self/mountinfo') ?? '')
  const own = parseProcCgroup(files.read('/proc/self/cgroup') ?? '')
  const dirs: Dirs = {}
  const v2 = mounts.find(m => m.fstype === 'cgroup2')
  if (v2 !== undefined && own.has('')) dirs.v2 = { dir: under(v2.mountpoint, own.get('') as string, v2.root), mountpoint: v2.mountpoint }
  for (const c of ['cpu', 'memory'] as const) {
    const m = mounts.find(m => m.fstype === 'cgroup' && m.options.includes(c))
    if (m !== undefined && own.has(c)) dirs[c] = { dir: under(m.mountpoint, own.get(c) as string, m.root), mountpoint: m.mountpoint }
  }
  return dirs
}

/**
 * Reads this device's resources as its cgroups limit them. Where the groups are is found once;
 * the limits and the memory in use are read at each call (a few small files).
 */
export class Host {
  readonly #files: HostFiles
  readonly #dirs: Dirs

  constructor (files: HostFiles = realFiles) {
    this.#files = files
    this.#dirs = ownDirs(files)
  }

  #num (path: string): number | undefined {
    const text = this.#files.read(path)?.trim()
    if (text === undefined || text === '') return undefined
    const n = Number(text)
    return Number.isFinite(n) ? n : undefined
  }

  /** The cgroup limits on this process: CPUs (quota / period) and memory bytes, where any are set. */
  limits (): { cpus?: number, memoryBytes?: number, memoryUsed?: number } {
    const { v2, cpu, memory } = this.#dirs
    const out: { cpus?: number, memoryBytes?: number, memoryUsed?: number } = {}
    const cpus: number[] = []
    if (v2 !== undefined) {
      // "max 100000" (no limit) or "30000 100000".
      const q = tightest(v2.dir, v2.mountpoint, d => {
        const [quota, period] = (this.#files.read(join(d, 'cpu.max')) ?? '').trim().split(/\s+/)
        const qn = Number(quota)
        const pn = Number(period)
        return Number.isFinite(qn) && Number.isFinite(pn) && pn > 0 ? qn / pn : undefined
      })
      if (q !== undefined) cpus.push(q)
    }
    if (cpu !== undefined) {
      const q = tightest(cpu.dir, cpu.mountpoint, d => {
        const quota = this.#num(join(d, 'cpu.cfs_quota_us'))
        const period = this.#num(join(d, 'cpu.cfs_period_us'))
        return quota !== undefined && quota > 0 && period !== undefined && period > 0 ? quota / period : undefined
      })
      if (q !== undefined) cpus.push(q)
    }
    if (cpus.length > 0) out.cpus = Math.min(...cpus)
    // v1 reports "no limit" as a huge number.
    const UNLIMITED = 2 ** 60
    if (v2 !== undefined) {
      const max = tightest(v2.dir, v2.mountpoint, d => this.#num(join(d, 'memory.max')))
      if (max !== undefined) {
        out.memoryBytes = max
        const used = this.#num(join(v2.dir, 'memory.current'))
        if (used !== undefined) out.memoryUsed = used
      }
    }
    if (out.memoryBytes === undefined && memory !== undefined) {
      const max = tightest(memory.dir, memory.mountpoint, d => this.#num(join(d, 'memory.limit_in_bytes')))
      if (max !== undefined && max < UNLIMITED) {
        out.memoryBytes = max
        const used = this.#num(join(memory.dir, 'memory.usage_in_bytes'))
        if (used !== undefined) out.memoryUsed = used
      }
    }
    return out
  }

  #cached: { at: number, value: HostResources } | undefined

  /**
   * CPUs and memory now; with `maxAgeMs`, a reading no older than that may be reused (adverts ask
   * twice a second, and a cgroup's limits hardly change).
   */
  resources (maxAgeMs = 0): HostResources {
    const now = performance.now()
    if (this.#cached !== undefined && now - this.#cached.at < maxAgeMs) return this.#cached.value
    const limits = this.limits()
    const machineCpus = availableParallelism()
    const cpus = limits.cpus !== undefined ? Math.min(machineCpus, limits.cpus) : machineCpus
    const memTotal = limits.memoryBytes !== undefined ? Math.min(totalmem(), limits.memoryBytes) : totalmem()
    const memFree = limits.memoryBytes !== undefined && limits.memoryUsed !== undefined ? Math.max(0, Math.min(freemem(), memTotal - limits.memoryUsed)) : Math.min(freemem(), memTotal)
    this.#cached = { at: now, value: { cpus, memTotal, memFree } }
    return this.#cached.value
  }
}
