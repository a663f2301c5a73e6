import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { logger } from '@libp2p/logger'
import { manifestKey, newerRecord, openRecord, parseCid, type FunctionRef, type SignedRecord } from '../protocol/index.js'
import type { EdgeNode } from './node.js'

const log = logger('edge:agent:manifests')

export interface ManifestStoreInit {
  /** Deadline of one DHT put or get. */
  timeoutMs?: number
  /** CIDs of the chunks this agent holds, to provide again after peers appear. */
  heldChunks?: () => string[]
}

export interface Resolved {
  record: SignedRecord
  source: 'dht' | 'local' | 'gossip'
}

/**
 * Signed manifests in the Kademlia DHT under `/edgefn/<name>`. Records this agent published are
 * also kept in `<dataDir>/manifests/`, and put again when peers appear (a lone agent cannot store
 * anything in the DHT). Every DHT operation is bounded by a deadline.
 */
export class ManifestStore {
  readonly #node: EdgeNode
  readonly #dir: string
  readonly #timeoutMs: number
  readonly #heldChunks: () => string[]
  #republishing: Promise<void> | undefined
  /** Signed records that arrived with deploy announcements, newest per name (verified on arrival). */
  readonly #remembered = new Map<string, SignedRecord>()

  constructor (node: EdgeNode, dataDir: string, init: ManifestStoreInit = {}) {
    this.#node = node
    this.#dir = join(dataDir, 'manifests')
    this.#timeoutMs = init.timeoutMs ?? 5000
    this.#heldChunks = init.heldChunks ?? (() => [])
    mkdirSync(this.#dir, { recursive: true })
  }

  /** Keeps the record locally and puts it in the DHT; resolves false if no peer could take it in time. */
  async publish (name: string, record: Uint8Array): Promise<boolean> {
    const file = join(this.#dir, `${name}.cbor`)
    writeFileSync(`${file}.tmp`, record)
    renameSync(`${file}.tmp`, file)
    return await this.#put(name, record)
  }

  async #put (name: string, record: Uint8Array): Promise<boolean> {
    if (this.#node.getConnections().length === 0) return false
    const signal = AbortSignal.timeout(this.#timeoutMs)
    let stored = 0
    try {
      for await (const event of this.#node.services.dht.put(manifestKey(name), record, { signal })) {
        if (event.name === 'PEER_RESPONSE') stored++
      }
    } catch (err) {
      log('put %s: %s after %d peers', name, (err as Error).message, stored)
    }
    return stored > 0
  }

  /** Puts every record published here again and provides every chunk held (after peers appear). Concurrent calls share one run. */
  async republish (): Promise<void> {
    this.#republishing ??= (async () => {
      for (const file of readdirSync(this.#dir).filter(f => f.endsWith('.cbor'))) {
        await this.#put(file.slice(0, -'.cbor'.length), readFileSync(join(this.#dir, file)))
      }
      await this.provide(this.#heldChunks())
    })().finally(() => { this.#republishing = undefined })
    await this.#republishing
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

  remember (record: SignedRecord): void {
    const current = this.#remembered.get(record.body.name)
    if (current === undefined || newerRecord(record.body, current.body)) this.#remembered.set(record.body.name, record)
  }

  /**
   * The record that vouches for this version if one came with gossip (signed, so as good as the
   * DHT's copy for that version), else the DHT's newest.
   */
  async find (ref: FunctionRef, options: { signal?: AbortSignal } = {}): Promise<Resolved | undefined> {
    const gossiped = this.#remembered.get(ref.name)
    const b = gossiped?.body
    if (gossiped !== undefined && b?.type === 'manifest' && b.version === ref.version && b.sha256 === ref.sha256) return { record: gossiped, source: 'gossip' }
    return await this.resolve(ref.name, options)
  }

  /** The newest valid record for `name`: from the DHT, else the one kept here; undefined if none. */
  async resolve (name: string, options: { signal?: AbortSignal } = {}): Promise<Resolved | undefined> {
    const signal = options.signal ?? AbortSignal.timeout(this.#timeoutMs)
    let value: Uint8Array | undefined
    if (this.#node.getConnections().length > 0) {
      try {
        for await (const event of this.#node.services.dht.get(manifestKey(name), { signal })) {
          if (event.name === 'VALUE') value = event.value
        }
      } catch (err) {
        log('get %s: %s', name, (err as Error).message)
      }
    }
    if (value !== undefined) {
      try {
        return { record: await openRecord(value), source: 'dht' }
      } catch (err) {
        log('invalid record for %s from the DHT: %s', name, (err as Error).message)
      }
    }
    const file = join(this.#dir, `${name}.cbor`)
    if (existsSync(file)) return { record: await openRecord(readFileSync(file)), source: 'local' }
    return undefined
  }
}
