import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { logger } from '../log.js'
import { manifestKey, newerRecord, openRecord, parseCid, type FunctionRef, type SignedRecord } from '../../protocol/index.js'
import type { EdgeNode } from '../swarm/node.js'

const log = logger('edge:agent:manifests')

/** Verified manifests remembered in memory (from gossip and look-ups). */
const MAX_REMEMBERED = 4096
/**
 * A look-up ends this long after the first valid record, or when this many have arrived: kad-dht's
 * get() otherwise waits for every query path to end (~0.2 s on 10 agents) before it answers. A
 * version's record never changes, so its first copy is enough; a function's newest record may be
 * stale on some peers, so more are compared.
 */
const SETTLE_MS = 60
const QUORUM_HEAD = 3

export interface ManifestStoreInit {
  /** Deadline of one DHT put or get. */
  timeoutMs?: number
  /** CIDs of the chunks this agent holds, to provide again after peers appear. */
  heldChunks?: () => string[]
  /** Told when the DHT holds a trusted tombstone for a function whose records are kept here (a delete this agent missed). */
  onDeleted?: (name: string, version: number) => void
}

export interface Resolved {
  record: SignedRecord
  source: 'dht' | 'local' | 'gossip'
}

interface Kept { record: SignedRecord, raw: Uint8Array, source: Resolved['source'] }

/**
 * Signed manifests in the Kademlia DHT: the newest under `/edgefn/<name>`, each version under
 * `/edgefn/<name>/<version>`. Records this agent signed, and those of the versions it holds, are
 * kept in `<dataDir>/manifests/` and put again when peers appear (a lone agent cannot store
 * anything in the DHT, and DHT records expire), so a version's record lives as long as its code
 * does. Every DHT operation is bounded by a deadline.
 */
export class ManifestStore {
  readonly #node: EdgeNode
  readonly #dir: string
  readonly #timeoutMs: number
  readonly #heldChunks: () => string[]
  readonly #onDeleted: (name: string, version: number) => void
  #republishing: Promise<void> | undefined
  /** A put reached no one; and at start, what is kept here has not been put by this process yet. */
  #unpublished = true
  /** Verified manifests by `name@version`: from deploy announcements, look-ups and deploys here. */
  readonly #known = new Map<string, Kept>()

  constructor (node: EdgeNode, dataDir: string, init: ManifestStoreInit = {}) {
    this.#node = node
    this.#dir = join(dataDir, 'manifests')
    this.#timeoutMs = init.timeoutMs ?? 5000
    this.#heldChunks = init.heldChunks ?? (() => [])
    this.#onDeleted = init.onDeleted ?? (() => {})
    mkdirSync(this.#dir, { recursive: true })
  }

  #write (file: string, record: Uint8Array): void {
    const path = join(this.#dir, file)
    writeFileSync(`${path}.tmp`, record)
    renameSync(`${path}.tmp`, path)
  }

  /**
   * Publishes a record this agent signed: under the function's key and, for a manifest, its
   * version's key; kept here too. Resolves false if no peer took it in time.
   */
  async publish (raw: Uint8Array): Promise<boolean> {
    const record = await openRecord(raw)
    const { name, version, type } = record.body
    this.#write(`${name}.cbor`, raw)
    if (type === 'manifest') {
      this.#remember(record, raw, 'local')
      this.#write(`${name}@${version}.cbor`, raw)
    } else {
      this.forget(name, version)
    }
    const [head] = await Promise.all([
      this.#put(manifestKey(name), raw),
      type === 'manifest' ? this.#put(manifestKey(name, version), raw) : undefined
    ])
    return head
  }

  /**
   * Keeps the record of a version this agent now holds (replicated or fetched). A replica also puts
   * it under its version key, so that the record lives as long as copies of the code do; a copy
   * fetched to run a call does not (every agent that ran a new function putting its record was a
   * DHT walk per agent per deploy, the storm that made a deploy slow to reach a whole swarm).
   */
  async keep (ref: FunctionRef, options: { put: boolean }): Promise<void> {
    const file = `${ref.name}@${ref.version}.cbor`
    if (existsSync(join(this.#dir, file))) return
    const kept = this.#known.get(`${ref.name}@${ref.version}`)
    if (kept === undefined || kept.record.body.type !== 'manifest' || kept.record.body.sha256 !== ref.sha256) return
    this.#write(file, kept.raw)
    if (options.put) await this.#put(manifestKey(ref.name, ref.version), kept.raw)
  }

  /** Whether this agent should put its records again when peers appear: not done since it started, or a put reached no one. */
  get unpublished (): boolean {
    return this.#unpublished
  }

  /** Stops keeping the record of one version (its code is no longer held here). */
  drop (ref: { name: string, version: number }): void {
    rmSync(join(this.#dir, `${ref.name}@${ref.version}.cbor`), { force: true })
  }

  /** Forgets every version of `name` up to `version` (deleted). */
  forget (name: string, version: number): void {
    for (const file of readdirSync(this.#dir)) {
      const m = /^(.+)@(\d+)\.cbor$/.exec(file)
      if (m?.[1] === name && Number(m[2]) <= version) rmSync(join(this.#dir, file), { force: true })
    }
    for (const [k, kept] of this.#known) {
      if (kept.record.body.name === name && kept.record.body.version <= version) this.#known.delete(k)
    }
  }

  async #put (key: Uint8Array, record: Uint8Array): Promise<boolean> {
    if (this.#node.getConnections().length === 0) return false
    const signal = AbortSignal.timeout(this.#timeoutMs)
    let stored = 0
    try {
      for await (const event of this.#node.services.dht.put(key, record, { signal })) {
        if (event.name === 'PEER_RESPONSE') stored++
      }
    } catch (err) {
      log('put %s: %s after %d peers', new TextDecoder().decode(key), (err as Error).message, stored)
    }
    if (stored === 0) this.#unpublished = true
    return stored > 0
  }

  async #get (key: Uint8Array, signal: AbortSignal): Promise<SignedRecord | undefined> {
    return (await this.#getRaw(key, signal))?.record
  }

  /**
   * The newest record under `key` among those peers answer with (each already checked by the
   * DHT's validator: schema, signature, trusted signer). Stops early: see SETTLE_MS.
   */
  async #getRaw (key: Uint8Array, signal: AbortSignal): Promise<{ record: SignedRecord, raw: Uint8Array } | undefined> {
    if (this.#node.getConnections().length === 0) return undefined
    const versioned = new TextDecoder().decode(key).split('/').length === 4
    const quorum = versioned ? 1 : QUORUM_HEAD
    let best: { record: SignedRecord, raw: Uint8Array } | undefined
    let count = 0
    const settle = new AbortController()
    let timer: NodeJS.Timeout | undefined
    try {
      for await (const event of this.#node.services.dht.get(key, { signal: AbortSignal.any([signal, settle.signal]) })) {
        const raw = event.name === 'VALUE' ? event.value : event.name === 'PEER_RESPONSE' ? event.record?.value : undefined
        if (raw === undefined) continue
        let record: SignedRecord
        try {
          record = await openRecord(raw)
        } catch (err) {
          log('invalid record under %s from the DHT: %s', new TextDecoder().decode(key), (err as Error).message)
          continue
        }
        if (best === undefined || newerRecord(record.body, best.record.body)) best = { record, raw }
        if (++count >= quorum) break
        timer ??= setTimeout(() => { settle.abort() }, SETTLE_MS)
      }
    } catch (err) {
      if (!settle.signal.aborted) log('get %s: %s', new TextDecoder().decode(key), (err as Error).message)
    } finally {
      clearTimeout(timer)
    }
    if (best?.record.body.type === 'manifest') this.#remember(best.record, best.raw, 'dht')
    return best
  }

  /**
   * Puts every record kept here again and provides every chunk held (after peers appear, and as DHT
   * records expire). Concurrent calls share one run. A DHT peer overwrites what it stores with
   * whatever it is given, so each function's newest record is read first: a newer one (a delete
   * or redeploy this agent missed while it was down) is adopted, never buried under a stale one.
   */
  async republish (): Promise<void> {
    this.#republishing ??= (async () => {
      this.#unpublished = false
      const names = new Map<string, number[]>()
      for (const file of readdirSync(this.#dir)) {
        const m = /^(.+?)(?:@(\d+))?\.cbor$/.exec(file)
        if (m === null) continue
        const versions = names.get(m[1] as string) ?? []
        if (m[2] !== undefined) versions.push(Number(m[2]))
        names.set(m[1] as string, versions)
      }
      for (const [name, versions] of names) await this.#republishFunction(name, versions)
      await this.provide(this.#heldChunks())
    })().finally(() => { this.#republishing = undefined })
    await this.#republishing
  }

  async #republishFunction (name: string, versions: number[]): Promise<void> {
    const current = await this.#getRaw(manifestKey(name), AbortSignal.timeout(this.#timeoutMs))
    const headFile = join(this.#dir, `${name}.cbor`)
    const ours = existsSync(headFile) ? await this.#readLocal(`${name}.cbor`) : undefined
    if (current !== undefined && (ours === undefined || newerRecord(current.record.body, ours.body))) {
      if (ours !== undefined) this.#write(`${name}.cbor`, current.raw)
      if (current.record.body.type === 'tombstone') {
        log('%s was deleted up to v%d while this agent was away', name, current.record.body.version)
        this.forget(name, current.record.body.version)
        this.#onDeleted(name, current.record.body.version)
      }
    } else if (ours !== undefined) {
      await this.#put(manifestKey(name), readFileSync(headFile))
    }
    for (const version of versions) {
      const file = join(this.#dir, `${name}@${version}.cbor`)
      if (existsSync(file)) await this.#put(manifestKey(name, version), readFileSync(file))
    }
  }

  /** Announces this agent as a provider of these chunks; returns how many reached some peer in time. */
  async provide (cids: string[]): Promise<number> {
    if (this.#node.getConnections().length === 0) return 0
    let provided = 0
    await Promise.all(cids.map(async (cid) => {
      let reached = false
      try {
        for await (const event of this.#node.services.dht.provide(parseCid(cid), { signal: AbortSignal.timeout(this.#timeoutMs) })) {
          if (event.name === 'PEER_RESPONSE') reached = true
        }
      } catch (err) {
        log('provide %s: %s', cid, (err as Error).message)
      }
      if (reached) provided++
    }))
    return provided
  }

  /** Who signed this version's manifest, if its record is known here. */
  signerOf (ref: FunctionRef): string | undefined {
    const kept = this.#known.get(`${ref.name}@${ref.version}`)
    return kept?.record.body.type === 'manifest' && kept.record.body.sha256 === ref.sha256 ? kept.record.signer : undefined
  }

  /** Remembers a verified manifest that came with a deploy announcement. */
  remember (record: SignedRecord, raw: Uint8Array): void {
    if (record.body.type === 'manifest') this.#remember(record, raw, 'gossip')
  }

  #remember (record: SignedRecord, raw: Uint8Array, source: Resolved['source']): void {
    const k = `${record.body.name}@${record.body.version}`
    const current = this.#known.get(k)
    if (current !== undefined && current.record.body.deployedAt >= record.body.deployedAt) return
    this.#known.delete(k)
    this.#known.set(k, { record, raw, source })
    if (this.#known.size > MAX_REMEMBERED) this.#known.delete(this.#known.keys().next().value as string)
  }

  /**
   * The record that vouches for this version: one remembered (from gossip or an earlier look-up),
   * else the DHT's record for the version — unless the DHT's newest record is a tombstone that
   * deletes it, which is returned instead — else the one kept here. Undefined if there is none.
   * The name's newest record is asked for only once the version's is found: a DHT get of a key
   * nobody holds asks every peer on its path (~17 ms of this agent's CPU, and ~7 ms of each
   * peer's, in a swarm of 4), and a peer sending calls of made-up versions made each cost two.
   */
  async find (ref: FunctionRef, options: { signal?: AbortSignal } = {}): Promise<Resolved | undefined> {
    const known = this.#known.get(`${ref.name}@${ref.version}`)
    if (known !== undefined && known.record.body.type === 'manifest' && known.record.body.sha256 === ref.sha256) return { record: known.record, source: known.source }
    const signal = options.signal ?? AbortSignal.timeout(this.#timeoutMs)
    const exact = await this.resolve(ref.name, { version: ref.version, signal })
    if (exact === undefined) return undefined
    const head = await this.#get(manifestKey(ref.name), signal)
    if (head?.body.type === 'tombstone' && head.body.version >= ref.version) return { record: head, source: 'dht' }
    return exact
  }

  /** The newest record for `name`, or the given version's: from the DHT, else the one kept here; undefined if none. */
  async resolve (name: string, options: { signal?: AbortSignal, version?: number } = {}): Promise<Resolved | undefined> {
    const signal = options.signal ?? AbortSignal.timeout(this.#timeoutMs)
    const found = await this.#get(manifestKey(name, options.version), signal)
    if (found !== undefined) return { record: found, source: 'dht' }
    const local = await this.#readLocal(options.version === undefined ? `${name}.cbor` : `${name}@${options.version}.cbor`)
    return local === undefined ? undefined : { record: local, source: 'local' }
  }

  async #readLocal (file: string): Promise<SignedRecord | undefined> {
    const path = join(this.#dir, file)
    if (!existsSync(path)) return undefined
    try {
      return await openRecord(readFileSync(path))
    } catch (err) {
      log.error('ignoring unreadable %s: %s', path, (err as Error).message)
      return undefined
    }
  }
}
