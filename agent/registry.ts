import { createHash } from 'node:crypto'
import { mkdirSync, readFileSync, renameSync, rmSync, writeFileSync, existsSync } from 'node:fs'
import { open, readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { logger } from '@libp2p/logger'
import { chunk, CHUNK_BYTES, FunctionNotFoundError, type FunctionRef, type FunctionSpec } from '../protocol/index.js'

const log = logger('edge:agent:registry')

export function sha256Hex (data: Uint8Array): string {
  return createHash('sha256').update(data).digest('hex')
}

function key (f: { name: string, version: number }): string {
  return `${f.name}@${f.version}`
}

/** What this agent knows of one function, from its own store, announcements and adverts. */
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

/**
 * Functions known to this agent. Code held locally lives in `<dataDir>/functions/<sha256>.wasm`
 * with an index file, so it survives restarts. Remote knowledge (who holds what) is soft state
 * rebuilt from adverts.
 */
export class FunctionRegistry {
  readonly #dir: string
  readonly #local = new Map<string, FunctionSpec>()
  /** Full specs known, by `name@version` (several names may share one artifact). */
  readonly #specs = new Map<string, FunctionSpec>()
  /** name → peerId → ref, from each peer's latest advert. */
  readonly #advertised = new Map<string, Map<string, FunctionRef>>()
  readonly #tombstones = new Map<string, number>()
  /** The merged view (newest version of each name, with holders), rebuilt after any change. */
  #view: Map<string, KnownFunction> | undefined
  /** Chunks of the code held here, by CID: where each lies in its artifact's file. */
  readonly #chunks = new Map<string, { sha256: string, offset: number, length: number }>()
  /** Versions whose manifest is signed by a key this agent does not trust: never resolved to. */
  readonly #refused = new Map<string, { name: string, signer: string }>()

  constructor (dataDir: string) {
    this.#dir = join(dataDir, 'functions')
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
        if (existsSync(this.codePath(spec.sha256))) {
          this.#local.set(spec.name, spec)
          this.#specs.set(key(spec), spec)
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
    return join(this.#dir, `${sha256}.wasm`)
  }

  /** Stops resolving to this version (its deployer is not trusted here): the newest trusted one wins. */
  refuse (ref: FunctionRef, signer: string): void {
    this.#refused.set(`${key(ref)}:${ref.sha256}`, { name: ref.name, signer })
    this.#view = undefined
  }

  /** Signers of the versions of `name` set aside as untrusted. */
  refusedSigners (name: string): string[] {
    return [...new Set([...this.#refused.values()].filter(r => r.name === name).map(r => r.signer))]
  }

  isDeleted (name: string, version: number): boolean {
    return version <= (this.#tombstones.get(name) ?? 0)
  }

  /**
   * Stores code this agent holds (deployed here or fetched). Replaces an older local version.
   * `cids`, when the caller has them already (a manifest's verified chunk list), spare hashing again.
   */
  hold (spec: FunctionSpec, code: Uint8Array, cids?: string[]): { replaced: FunctionSpec | undefined } {
    const current = this.#local.get(spec.name)
    if (current !== undefined && !newer(spec, current)) return { replaced: undefined }
    const file = this.codePath(spec.sha256)
    const tmp = `${file}.tmp`
    writeFileSync(tmp, code)
    renameSync(tmp, file)
    this.#view = undefined
    this.#local.set(spec.name, spec)
    this.#specs.set(key(spec), spec)
    if (!this.#indexed(spec.sha256)) this.#indexChunks(spec.sha256, code, cids)
    if (current !== undefined) this.#removeCodeIfUnused(current.sha256)
    this.#save()
    return { replaced: current }
  }

  /** True if some function held here uses this code (several names may share one artifact). */
  holdsCode (sha256: string): boolean {
    for (const spec of this.#local.values()) if (spec.sha256 === sha256) return true
    return false
  }

  #removeCodeIfUnused (sha256: string): void {
    if (this.holdsCode(sha256)) return
    rmSync(this.codePath(sha256), { force: true })
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

  /** Records a full spec learned from an announcement (no code). */
  learn (spec: FunctionSpec): void {
    if (this.isDeleted(spec.name, spec.version)) return
    this.#view = undefined
    this.#specs.set(key(spec), spec)
  }

  /** Marks every version ≤ `version` of `name` deleted; returns the local spec that was dropped. */
  tombstone (name: string, version: number): FunctionSpec | undefined {
    this.#view = undefined
    if (version > (this.#tombstones.get(name) ?? 0)) this.#tombstones.set(name, version)
    const local = this.#local.get(name)
    let dropped: FunctionSpec | undefined
    if (local !== undefined && local.version <= version) {
      this.#local.delete(name)
      this.#removeCodeIfUnused(local.sha256)
      dropped = local
    }
    for (const [k, spec] of this.#specs) {
      if (spec.name === name && spec.version <= version) this.#specs.delete(k)
    }
    this.#save()
    return dropped
  }

  /** Replaces what `peerId` is known to hold with the list from its latest advert. */
  setAdvertised (peerId: string, refs: FunctionRef[]): void {
    this.#view = undefined
    for (const byPeer of this.#advertised.values()) byPeer.delete(peerId)
    for (const ref of refs) {
      if (this.isDeleted(ref.name, ref.version)) continue
      let byPeer = this.#advertised.get(ref.name)
      if (byPeer === undefined) {
        byPeer = new Map()
        this.#advertised.set(ref.name, byPeer)
      }
      byPeer.set(peerId, ref)
    }
  }

  forgetPeer (peerId: string): void {
    this.#view = undefined
    for (const byPeer of this.#advertised.values()) byPeer.delete(peerId)
  }

  localSpec (name: string): FunctionSpec | undefined {
    return this.#local.get(name)
  }

  localSpecs (): FunctionSpec[] {
    return [...this.#local.values()]
  }

  /** The full spec of one version of a function, if known (held, announced or fetched). */
  specOf (ref: FunctionRef): FunctionSpec | undefined {
    const spec = this.#specs.get(key(ref))
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

  /** The newest version of `name` known anywhere, with the peers that hold it. */
  resolve (name: string): KnownFunction {
    const found = this.#all().get(name)
    if (found === undefined) throw new FunctionNotFoundError(`unknown function '${name}': 'edge list' shows the functions deployed in the swarm`)
    return found
  }

  list (): KnownFunction[] {
    return [...this.#all().values()].sort((a, b) => a.ref.name.localeCompare(b.ref.name))
  }

  highestVersion (name: string): number {
    const found = this.#all().get(name)
    return Math.max(found?.ref.version ?? 0, this.#tombstones.get(name) ?? 0)
  }

  #all (): Map<string, KnownFunction> {
    this.#view ??= this.#build()
    return this.#view
  }

  #build (): Map<string, KnownFunction> {
    const out = new Map<string, KnownFunction>()
    const consider = (ref: FunctionRef, deployedAt: number | undefined): KnownFunction | undefined => {
      if (this.isDeleted(ref.name, ref.version) || this.#refused.has(`${key(ref)}:${ref.sha256}`)) return undefined
      const current = out.get(ref.name)
      if (current !== undefined && current.ref.sha256 === ref.sha256) return current
      if (current !== undefined && !newer({ version: ref.version, deployedAt }, { version: current.ref.version, deployedAt: current.spec?.deployedAt })) return undefined
      const entry: KnownFunction = { ref: { name: ref.name, version: ref.version, sha256: ref.sha256 }, spec: this.#specs.get(key(ref)), holders: new Set(), local: false }
      out.set(ref.name, entry)
      return entry
    }
    for (const spec of this.#local.values()) consider(spec, spec.deployedAt)
    for (const spec of this.#specs.values()) consider(spec, spec.deployedAt)
    for (const byPeer of this.#advertised.values()) {
      for (const ref of byPeer.values()) consider(ref, this.#specs.get(key(ref))?.deployedAt)
    }
    for (const entry of out.values()) {
      entry.local = this.#local.get(entry.ref.name)?.sha256 === entry.ref.sha256
      for (const [peerId, ref] of this.#advertised.get(entry.ref.name) ?? []) {
        if (ref.sha256 === entry.ref.sha256) entry.holders.add(peerId)
      }
    }
    return out
  }
}
