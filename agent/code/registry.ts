import { createHash } from 'node:crypto'
import { mkdirSync, readFileSync, renameSync, rmSync, writeFileSync, existsSync } from 'node:fs'
import { open, readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { logger } from '../log.js'
import { chunk, CHUNK_BYTES, FunctionNotFoundError, type FunctionRef, type FunctionSpec } from '../../protocol/index.js'
import { StorageFullError } from '../errors.js'

const log = logger('edge:agent:registry')

export function sha256Hex (data: Uint8Array): string {
  return createHash('sha256').update(data).digest('hex')
}

export function versionKey (f: { name: string, version: number }): string {
  return `${f.name}@${f.version}`
}

/** One version of one function's code exactly: `name@version:sha256`. */
export function refKey (ref: FunctionRef): string {
  return `${versionKey(ref)}:${ref.sha256}`
}

/** What this agent knows of one version of a function, from its own store, announcements and adverts. */
export interface KnownFunction {
  ref: FunctionRef
  /** Full spec (limits), when known: from a local copy, an announcement or a fetch. */
  spec: FunctionSpec | undefined
  /** Peers whose adverts say they hold this version's code. */
  holders: Set<string>
  local: boolean
}

interface Index {
  functions: FunctionSpec[]
  tombstones: Record<string, number>
}

/** Newer wins: higher version, then later deploy time. */
export function newer (a: { version: number, deployedAt?: number }, b: { version: number, deployedAt?: number }): boolean {
  if (a.version !== b.version) return a.version > b.version
  return (a.deployedAt ?? 0) > (b.deployedAt ?? 0)
}

export interface RegistryInit {
  /** Versions of each function the swarm keeps: older ones are dropped and no longer resolve. */
  versionsKept?: number
  /** Bytes of code this agent may hold on disk. */
  quotaBytes?: number
  /** Copies the swarm keeps: held code is evicted only while at least this many other live agents hold it. */
  replicas?: number
  /**
   * Whether a peer's advert counts: what it holds makes versions known and it a holder (to call, to
   * fetch from, and as a copy). A trusted agent holds only code a trusted key signed; an untrusted
   * peer's list could name anything, and counting it as a copy would let it talk the swarm out of
   * keeping real ones. Checked whenever the view is built, so trust may change. Default: every peer.
   */
  vouches?: (peerId: string) => boolean
}

/** Versions set aside without a signer to name (no trusted record found) are looked at again after this long. */
export const SET_ASIDE_MS = 60_000
/** Versions set aside are remembered up to this many (announcements from untrusted members cost no more than that). */
const MAX_REFUSED = 1024

/**
 * Functions known to this agent, every version kept. Code held locally lives in
 * `<dataDir>/functions/<sha256>.code` (a WASM module or a tar of a container function) with an index file, so it survives restarts; it stays within
 * a storage quota, evicting the least recently used code that enough other agents hold. Remote
 * knowledge (who holds what) is soft state rebuilt from adverts.
 */
export class FunctionRegistry {
  readonly #dir: string
  readonly #versionsKept: number
  readonly #quotaBytes: number
  readonly #replicas: number
  /** Versions held here, by `name@version`. */
  readonly #local = new Map<string, FunctionSpec>()
  /** Full specs known, by `name@version` (several names may share one artifact). */
  readonly #specs = new Map<string, FunctionSpec>()
  /** peerId → the versions its latest advert says it holds. */
  readonly #advertised = new Map<string, FunctionRef[]>()
  readonly #tombstones = new Map<string, number>()
  /** The merged view: name → its kept versions, newest first, with holders. Rebuilt after any change. */
  #view: Map<string, KnownFunction[]> | undefined
  /** Chunks of the code held here, by CID: where each lies in its artifact's file. */
  readonly #chunks = new Map<string, { sha256: string, offset: number, length: number }>()
  /** Versions whose manifest is signed by a key this agent does not trust: never resolved to. */
  readonly #refused = new Map<string, { name: string, version: number, signer?: string, until: number }>()
  readonly #vouches: (peerId: string) => boolean
  /** When the view must be built again because a version set aside for a while comes back. */
  #viewUntil = Number.POSITIVE_INFINITY
  /** When each artifact held here was last used (a use counter: clocks tie within a millisecond), for eviction. */
  readonly #lastUsed = new Map<string, number>()
  #uses = 0

  constructor (dataDir: string, init: RegistryInit = {}) {
    this.#dir = join(dataDir, 'functions')
    this.#versionsKept = Math.max(1, init.versionsKept ?? 3)
    this.#quotaBytes = init.quotaBytes ?? Number.POSITIVE_INFINITY
    this.#replicas = init.replicas ?? 3
    this.#vouches = init.vouches ?? (() => true)
    mkdirSync(this.#dir, { recursive: true })
    this.#load()
  }

  #indexFile (): string {
    return join(this.#dir, 'index.json')
  }

  #load (): void {
    if (!existsSync(this.#indexFile())) return
    try {
      const index = JSON.parse(readFileSync(this.#indexFile(), 'utf8')) as Index
      for (const spec of index.functions) {
        // Earlier agents named every artifact .wasm, whatever its runtime.
        const legacy = join(this.#dir, `${spec.sha256}.wasm`)
        if (!existsSync(this.codePath(spec.sha256)) && existsSync(legacy)) renameSync(legacy, this.codePath(spec.sha256))
        if (existsSync(this.codePath(spec.sha256))) {
          this.#local.set(versionKey(spec), spec)
          this.#specs.set(versionKey(spec), spec)
          if (!this.#indexed(spec.sha256)) this.#indexChunks(spec.sha256, readFileSync(this.codePath(spec.sha256)))
        }
      }
      for (const [name, version] of Object.entries(index.tombstones ?? {})) this.#tombstones.set(name, version)
    } catch (err) {
      log.error('ignoring unreadable function index: %e', err)
    }
  }

  #save (): void {
    const index: Index = { functions: [...this.#local.values()], tombstones: Object.fromEntries(this.#tombstones) }
    const tmp = `${this.#indexFile()}.tmp`
    writeFileSync(tmp, JSON.stringify(index, null, 2))
    renameSync(tmp, this.#indexFile())
  }

  codePath (sha256: string): string {
    return join(this.#dir, `${sha256}.code`)
  }

  /**
   * Stops resolving to this version: the newest trusted one wins. With the `signer` of its
   * manifest (a key this agent does not trust), for good; without (no trusted manifest vouches for
   * it yet: a record not found, or one of another version), for SET_ASIDE_MS.
   */
  refuse (ref: FunctionRef, signer?: string): void {
    const k = refKey(ref)
    this.#refused.delete(k)
    this.#refused.set(k, { name: ref.name, version: ref.version, ...(signer !== undefined ? { signer } : {}), until: signer !== undefined ? Number.POSITIVE_INFINITY : Date.now() + SET_ASIDE_MS })
    if (this.#refused.size > MAX_REFUSED) this.#refused.delete(this.#refused.keys().next().value as string)
    this.#view = undefined
  }

  #isRefused (ref: FunctionRef, now: number): boolean {
    const k = refKey(ref)
    const r = this.#refused.get(k)
    if (r === undefined) return false
    if (r.until > now) {
      this.#viewUntil = Math.min(this.#viewUntil, r.until)
      return true
    }
    this.#refused.delete(k)
    return false
  }

  /** Lets go of the versions set aside for being signed by `signer`, which is trusted now. */
  forgive (signer: string): void {
    for (const [k, r] of this.#refused) if (r.signer === signer) this.#refused.delete(k)
    this.#view = undefined
  }

  /** Signers of the versions of `name` (or of its one `version`) set aside as untrusted. */
  refusedSigners (name: string, version?: number): string[] {
    const signers = [...this.#refused.values()].filter(r => r.name === name && (version === undefined || r.version === version) && r.signer !== undefined).map(r => r.signer as string)
    return [...new Set(signers)]
  }

  isDeleted (name: string, version: number): boolean {
    return version <= (this.#tombstones.get(name) ?? 0)
  }

  /** Bytes of code held on disk (an artifact shared by several versions counts once). */
  bytesHeld (): number {
    const sizes = new Map<string, number>()
    for (const spec of this.#local.values()) sizes.set(spec.sha256, spec.size)
    let total = 0
    for (const size of sizes.values()) total += size
    return total
  }

  get quotaBytes (): number {
    return this.#quotaBytes
  }

  /** Notes a use of this code, for eviction (least recently used goes first). */
  touch (sha256: string): void {
    this.#lastUsed.set(sha256, ++this.#uses)
  }

  /**
   * The versions to evict so that `size` more bytes fit in the quota, least recently used first,
   * never code that fewer than R other live agents hold; undefined if no such choice makes room.
   */
  #evictionFor (size: number, keep: string): FunctionSpec[] | undefined {
    let over = this.bytesHeld() + size - this.#quotaBytes
    if (over <= 0) return []
    const byCode = new Map<string, FunctionSpec[]>()
    for (const spec of this.#local.values()) {
      if (spec.sha256 === keep) continue
      byCode.set(spec.sha256, [...(byCode.get(spec.sha256) ?? []), spec])
    }
    const copies = (spec: FunctionSpec): number => {
      const entry = this.#all().get(spec.name)?.find(k => k.ref.version === spec.version && k.ref.sha256 === spec.sha256)
      return entry?.holders.size ?? 0
    }
    const candidates = [...byCode.entries()]
      .filter(([, specs]) => specs.every(s => copies(s) >= this.#replicas))
      .sort(([a], [b]) => (this.#lastUsed.get(a) ?? 0) - (this.#lastUsed.get(b) ?? 0))
    const evict: FunctionSpec[] = []
    for (const [, specs] of candidates) {
      if (over <= 0) break
      evict.push(...specs)
      over -= specs[0]?.size ?? 0
    }
    return over <= 0 ? evict : undefined
  }

  /** Whether code of `size` bytes (not held yet) can be held here, evicting what may be evicted. */
  hasRoom (size: number, sha256 = ''): boolean {
    if (this.holdsCode(sha256)) return true
    return this.#evictionFor(size, sha256) !== undefined
  }

  /**
   * Stores code this agent holds (deployed here or fetched), keeping the newest versions of each
   * function and dropping older ones; evicts other code to stay within the quota, or throws
   * StorageFullError. `cids`, when the caller has them already (a manifest's verified chunk list),
   * spare hashing again. Returns the versions no longer held.
   */
  hold (spec: FunctionSpec, code: Uint8Array, cids?: string[]): { dropped: FunctionSpec[] } {
    const k = versionKey(spec)
    if (this.#local.get(k)?.sha256 === spec.sha256) return { dropped: [] }
    if (!this.#kept(spec)) return { dropped: [] }
    const evict = this.holdsCode(spec.sha256) ? [] : this.#evictionFor(spec.size, spec.sha256)
    if (evict === undefined) {
      throw new StorageFullError(`no room for ${spec.name} v${spec.version} (${spec.size} bytes): ${this.bytesHeld()} of the ${this.#quotaBytes} bytes this agent may hold are taken by code that fewer than ${this.#replicas} other agents hold (raise --storage, or delete functions)`)
    }
    const file = this.codePath(spec.sha256)
    if (!existsSync(file)) {
      const tmp = `${file}.tmp`
      writeFileSync(tmp, code)
      renameSync(tmp, file)
    }
    const dropped: FunctionSpec[] = []
    const replaced = this.#local.get(k)
    if (replaced !== undefined) dropped.push(replaced)
    this.#view = undefined
    this.#local.set(k, spec)
    this.#specs.set(k, spec)
    this.touch(spec.sha256)
    if (!this.#indexed(spec.sha256)) this.#indexChunks(spec.sha256, code, cids)
    // Versions beyond the newest kept ones, and evicted code, go.
    const versions = [...this.#local.values()].filter(s => s.name === spec.name).sort((a, b) => newer(a, b) ? -1 : 1)
    dropped.push(...versions.slice(this.#versionsKept), ...evict)
    for (const old of dropped) this.#drop(old)
    if (evict.length > 0) log('evicted %s to make room for %s', evict.map(versionKey).join(', '), k)
    this.#save()
    return { dropped }
  }

  #drop (spec: FunctionSpec): void {
    const k = versionKey(spec)
    if (this.#local.get(k)?.sha256 === spec.sha256) this.#local.delete(k)
    this.#view = undefined
    this.#removeCodeIfUnused(spec.sha256)
  }

  /** True if this exact version is held here. */
  holds (ref: FunctionRef): boolean {
    return this.#local.get(versionKey(ref))?.sha256 === ref.sha256
  }

  /** True if some function held here uses this code (several names may share one artifact). */
  holdsCode (sha256: string): boolean {
    for (const spec of this.#local.values()) if (spec.sha256 === sha256) return true
    return false
  }

  #removeCodeIfUnused (sha256: string): void {
    if (this.holdsCode(sha256)) return
    rmSync(this.codePath(sha256), { force: true })
    this.#lastUsed.delete(sha256)
    for (const [cid, where] of this.#chunks) if (where.sha256 === sha256) this.#chunks.delete(cid)
  }

  #indexed (sha256: string): boolean {
    for (const where of this.#chunks.values()) if (where.sha256 === sha256) return true
    return false
  }

  #indexChunks (sha256: string, code: Uint8Array, cids = chunk(code).map(c => c.cid.toString())): void {
    cids.forEach((cid, i) => {
      const offset = i * CHUNK_BYTES
      this.#chunks.set(cid, { sha256, offset, length: Math.min(CHUNK_BYTES, code.byteLength - offset) })
    })
  }

  /** CIDs of every chunk held here, to provide in the DHT. */
  chunkCids (): string[] {
    return [...this.#chunks.keys()]
  }

  /** One chunk of held code by its CID, read from the artifact's file; undefined if not held. */
  async readChunk (cid: string): Promise<Uint8Array | undefined> {
    const where = this.#chunks.get(cid)
    if (where === undefined) return undefined
    const handle = await open(this.codePath(where.sha256), 'r').catch(() => undefined)
    if (handle === undefined) return undefined
    try {
      const buf = Buffer.alloc(where.length)
      const { bytesRead } = await handle.read(buf, 0, where.length, where.offset)
      return bytesRead === where.length ? buf : undefined
    } finally {
      await handle.close()
    }
  }

  /** Records a full spec learned from an announcement (no code) whose manifest a trusted key signed. */
  learn (spec: FunctionSpec): void {
    if (this.isDeleted(spec.name, spec.version)) return
    this.#view = undefined
    this.#specs.set(versionKey(spec), spec)
  }

  /** Marks every version ≤ `version` of `name` deleted; returns the versions held here that were dropped. */
  tombstone (name: string, version: number): FunctionSpec[] {
    this.#view = undefined
    if (version > (this.#tombstones.get(name) ?? 0)) this.#tombstones.set(name, version)
    const dropped = [...this.#local.values()].filter(s => s.name === name && s.version <= version)
    for (const spec of dropped) this.#drop(spec)
    for (const [k, spec] of this.#specs) {
      if (spec.name === name && spec.version <= version) this.#specs.delete(k)
    }
    this.#save()
    return dropped
  }

  /** Replaces what `peerId` is known to hold with the list from its latest advert. */
  setAdvertised (peerId: string, refs: FunctionRef[]): void {
    this.#view = undefined
    this.#advertised.set(peerId, refs.filter(ref => !this.isDeleted(ref.name, ref.version)))
  }

  forgetPeer (peerId: string): void {
    this.#view = undefined
    this.#advertised.delete(peerId)
  }

  /** The newest version of `name` held here. */
  localSpec (name: string): FunctionSpec | undefined {
    let best: FunctionSpec | undefined
    for (const spec of this.#local.values()) if (spec.name === name && (best === undefined || newer(spec, best))) best = spec
    return best
  }

  /** Every version held here. */
  localSpecs (): FunctionSpec[] {
    return [...this.#local.values()]
  }

  /** The full spec of one version of a function, if known (held, announced or fetched). */
  specOf (ref: FunctionRef): FunctionSpec | undefined {
    const spec = this.#specs.get(versionKey(ref))
    return spec?.sha256 === ref.sha256 ? spec : undefined
  }

  async readCode (sha256: string): Promise<Uint8Array | undefined> {
    if (!this.holdsCode(sha256)) return undefined
    try {
      return await readFile(this.codePath(sha256))
    } catch {
      return undefined
    }
  }

  /** The newest version of `name` known anywhere, or the given one, with the peers that hold it. */
  resolve (name: string, version?: number): KnownFunction {
    const versions = this.#all().get(name)
    if (versions === undefined || versions.length === 0) throw new FunctionNotFoundError(`unknown function '${name}': 'edge list' shows the functions deployed in the swarm`)
    if (version === undefined) return versions[0] as KnownFunction
    const found = versions.find(k => k.ref.version === version)
    if (found !== undefined) return found
    const why = this.isDeleted(name, version) ? 'was deleted' : version > (versions[0]?.ref.version ?? 0) ? 'is not deployed' : 'is no longer kept'
    throw new FunctionNotFoundError(`version ${version} of '${name}' ${why}: the swarm has ${versions.map(k => `v${k.ref.version}`).join(', ')}`)
  }

  /** The kept versions of `name`, newest first. */
  versions (name: string): KnownFunction[] {
    return this.#all().get(name) ?? []
  }

  /** The newest version of every function. */
  list (): KnownFunction[] {
    return [...this.#all().values()].map(v => v[0] as KnownFunction).sort((a, b) => a.ref.name.localeCompare(b.ref.name))
  }

  /** Every kept version of every function. */
  all (): KnownFunction[] {
    return [...this.#all().values()].flat()
  }

  highestVersion (name: string): number {
    return Math.max(this.#all().get(name)?.[0]?.ref.version ?? 0, this.localSpec(name)?.version ?? 0, this.#tombstones.get(name) ?? 0)
  }

  #kept (ref: { name: string, version: number }): boolean {
    const versions = this.#all().get(ref.name) ?? []
    return versions.length < this.#versionsKept || ref.version >= (versions[this.#versionsKept - 1]?.ref.version ?? 0)
  }

  #all (): Map<string, KnownFunction[]> {
    if (this.#view !== undefined && Date.now() >= this.#viewUntil) this.#view = undefined
    if (this.#view === undefined) {
      this.#viewUntil = Number.POSITIVE_INFINITY
      this.#view = this.#build()
    }
    return this.#view
  }

  #build (): Map<string, KnownFunction[]> {
    const byVersion = new Map<string, KnownFunction>()
    const now = Date.now()
    const consider = (ref: FunctionRef, deployedAt: number | undefined): void => {
      if (this.isDeleted(ref.name, ref.version) || this.#isRefused(ref, now)) return
      const k = versionKey(ref)
      const current = byVersion.get(k)
      if (current !== undefined && (current.ref.sha256 === ref.sha256 || !newer({ version: ref.version, deployedAt }, { version: current.ref.version, deployedAt: current.spec?.deployedAt }))) return
      byVersion.set(k, { ref: { name: ref.name, version: ref.version, sha256: ref.sha256 }, spec: this.#specs.get(k), holders: new Set(), local: false })
    }
    for (const spec of this.#local.values()) consider(spec, spec.deployedAt)
    for (const spec of this.#specs.values()) consider(spec, spec.deployedAt)
    for (const [peerId, refs] of this.#advertised) {
      if (!this.#vouches(peerId)) continue
      for (const ref of refs) consider(ref, this.#specs.get(versionKey(ref))?.deployedAt)
    }
    for (const [peerId, refs] of this.#advertised) {
      if (!this.#vouches(peerId)) continue
      for (const ref of refs) {
        const entry = byVersion.get(versionKey(ref))
        if (entry?.ref.sha256 === ref.sha256) entry.holders.add(peerId)
      }
    }
    const out = new Map<string, KnownFunction[]>()
    for (const entry of byVersion.values()) {
      entry.local = this.holds(entry.ref)
      out.set(entry.ref.name, [...(out.get(entry.ref.name) ?? []), entry])
    }
    for (const [name, versions] of out) {
      out.set(name, versions.sort((a, b) => b.ref.version - a.ref.version).slice(0, this.#versionsKept))
    }
    return out
  }
}
