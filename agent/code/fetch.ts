import { createHash } from 'node:crypto'
import { heldBack, logger, Throttle } from '../log.js'
import { peerIdFromString } from '@libp2p/peer-id'
import { LRUCache } from 'lru-cache'
import {
  FETCH_CHUNK_BYTES, FETCH_PROTOCOL, FetchFailedError, FramedStream, matches, MAX_FETCH_FRAME_BYTES, parseCid, validateChunkHeader,
  validateFetchChunk, validateFetchRequest, WIRE_VERSION
} from '../../protocol/index.js'
import type { FunctionRegistry } from './registry.js'
import type { EdgeNode } from '../swarm/node.js'
import type { Stream } from '@libp2p/interface'

/** Refused peers are logged once a minute each. */
const refusedPeers = new Throttle(60_000)
const log = logger('edge:agent:fetch')

/** Chunks fetched at once when assembling code from a manifest. */
const PARALLEL_CHUNKS = 4
/** Providers asked for in the DHT per chunk, besides the hints. */
const MAX_PROVIDERS = 8
/** How long a provider look-up goes on after the first providers turn up. */
const PROVIDERS_SETTLE_MS = 150
/** Bytes of code offered ahead of a fetch (small code that came with its deploy announcement) kept in memory. */
const OFFERED_BYTES = 2 * 1024 * 1024

/** What a manifest says of the code, enough to fetch and verify it chunk by chunk. */
export interface CodeLayout {
  chunks: string[]
  size: number
  sha256: string
}

/** Chunks sent to one peer at once; a request beyond has its stream closed unanswered (the fetcher asks another holder). */
export const MAX_SERVED_PER_PEER = 16

/**
 * `/edge/fetch/1`: one stream per request, for one chunk of code by its CID (as a signed manifest
 * lists them). The server answers with a header, the bytes in frames, and closes. The client checks
 * size and hash before anyone uses the bytes; a provider that sends bytes that do not match is
 * penalised (asked last from then on) and the chunk is asked of the next provider.
 */
export class FetchService {
  readonly #node: EdgeNode
  readonly #registry: FunctionRegistry
  readonly #penalties = new Map<string, number>()
  /** Code by sha256 that reached this agent before anyone asked for it, checked against its hash. */
  readonly #offered = new LRUCache<string, Uint8Array>({ maxSize: OFFERED_BYTES, sizeCalculation: (code) => code.byteLength })

  readonly #onBadBytes: (peer: string) => void

  readonly #authorised: (peerId: string) => boolean
  /** Chunks being sent, per peer. */
  readonly #serving = new Map<string, number>()

  /** `authorised`: the peers this agent serves code to; any other's stream is closed unanswered. */
  constructor (node: EdgeNode, registry: FunctionRegistry, init: { onBadBytes?: (peer: string) => void, authorised?: (peerId: string) => boolean } = {}) {
    this.#node = node
    this.#registry = registry
    this.#onBadBytes = init.onBadBytes ?? (() => {})
    this.#authorised = init.authorised ?? (() => true)
  }

  async start (): Promise<void> {
    await this.#node.handle(FETCH_PROTOCOL, (stream, connection) => {
      const from = connection.remotePeer.toString()
      if (this.#authorised(from)) {
        const serving = this.#serving.get(from) ?? 0
        if (serving >= MAX_SERVED_PER_PEER) {
          stream.abort(new Error(`${MAX_SERVED_PER_PEER} chunks are being sent to ${from} already`))
          return
        }
        this.#serving.set(from, serving + 1)
        void this.#serve(stream).finally(() => {
          const left = (this.#serving.get(from) ?? 1) - 1
          if (left > 0) this.#serving.set(from, left)
          else this.#serving.delete(from)
        })
        return
      }
      const held = refusedPeers.allow(from)
      if (held !== undefined) log.info('refused a fetch from %s, a peer this agent does not trust%s', from, heldBack(held))
      stream.abort(new Error(`this agent serves code only to peers it trusts, and not to ${from}`))
    }, { maxInboundStreams: 64, maxOutboundStreams: 64 })
  }

  async stop (): Promise<void> {
    await this.#node.unhandle(FETCH_PROTOCOL)
  }

  /**
   * Code that came before it was asked for (with its deploy announcement): the next fetch of that
   * sha256 takes it from memory. Bytes that do not hash to `sha256` are refused (returns false).
   */
  offer (sha256: string, code: Uint8Array): boolean {
    if (createHash('sha256').update(code).digest('hex') !== sha256) return false
    this.#offered.set(sha256, code)
    return true
  }

  /** How often each peer sent bytes that did not match their hash (for tests and status). */
  penalties (): Record<string, number> {
    return Object.fromEntries(this.#penalties)
  }

  async #serve (stream: Stream): Promise<void> {
    const signal = AbortSignal.timeout(60_000)
    let framed: FramedStream | undefined
    try {
      const request = await new Promise<unknown>((resolve, reject) => {
        framed = new FramedStream(stream, {
          maxFrameBytes: 1024,
          maxWriteBytes: MAX_FETCH_FRAME_BYTES,
          onMessage: resolve,
          onClose: (err) => { reject(err ?? new Error('stream closed before a request')) }
        })
        signal.addEventListener('abort', () => { reject(new Error('no fetch request in time')) }, { once: true })
      })
      const out = framed as unknown as FramedStream
      const req = validateFetchRequest(request)
      const bytes = await this.#registry.readChunk(req.cid)
      const header = { v: WIRE_VERSION, type: 'chunk-ok', size: bytes?.byteLength ?? 0 }
      if (bytes === undefined) {
        await out.write({ v: WIRE_VERSION, type: 'error', code: 'NOT_FOUND', message: 'not held here' }, { signal })
      } else {
        await out.write(header, { signal })
        for (let off = 0; off < bytes.length; off += FETCH_CHUNK_BYTES) {
          await out.write({ v: WIRE_VERSION, type: 'chunk', data: bytes.subarray(off, off + FETCH_CHUNK_BYTES) }, { signal })
        }
      }
      await out.close({ signal })
    } catch (err) {
      log('fetch request failed: %s', (err as Error).message)
      stream.abort(err as Error)
    }
  }

  /** One chunk by CID from one peer, verified. */
  async fetchChunkFrom (peer: string, cid: string, options: { signal?: AbortSignal } = {}): Promise<Uint8Array> {
    const parsed = parseCid(cid)
    return await this.#receive(peer, { v: WIRE_VERSION, type: 'fetch-chunk', cid }, (header) => validateChunkHeader(header).size,
      (bytes) => matches(parsed, bytes), options.signal)
  }

  /**
   * Assembles code from its chunks, several at once and spread over the providers (chunk i asks the
   * i-th first, the least penalised coming first), every chunk checked against its CID and the whole
   * against the sha256. The hinted holders (from adverts) are asked first; DHT providers are looked
   * up — once, as holders hold whole artifacts — when there are no hints or the hints fail. Code
   * offered ahead (`offer`: small code that came with its announcement) is taken from memory.
   */
  async fetchChunks (layout: CodeLayout, hints: string[], options: { signal?: AbortSignal } = {}): Promise<{ code: Uint8Array, from: string[] }> {
    const offered = this.#offered.get(layout.sha256)
    if (offered !== undefined && offered.byteLength === layout.size) {
      // Whoever fetches keeps it from now on.
      this.#offered.delete(layout.sha256)
      return { code: offered, from: [] }
    }
    const signal = options.signal ?? AbortSignal.timeout(60_000)
    const parts: Uint8Array[] = new Array(layout.chunks.length)
    const from = new Set<string>()
    let next = 0
    let lookup: Promise<string[]> | undefined
    const fromDht = async (cid: string): Promise<string[]> => await (lookup ??= this.#providers(cid, signal))
    const worker = async (): Promise<void> => {
      while (next < layout.chunks.length) {
        const i = next++
        const cid = layout.chunks[i] as string
        const asked = new Set<string>()
        const errors: string[] = []
        for (const source of [async () => hints, async () => await fromDht(cid)]) {
          const providers = this.#ranked(rotate([...new Set(await source())].filter(p => !asked.has(p)), i))
          for (const peer of providers) {
            asked.add(peer)
            try {
              parts[i] = await this.fetchChunkFrom(peer, cid, { signal })
              from.add(peer)
              break
            } catch (err) {
              signal.throwIfAborted()
              errors.push(`${peer.slice(-8)}: ${(err as Error).message}`)
            }
          }
          if (parts[i] !== undefined) break
        }
        if (parts[i] === undefined) {
          throw new FetchFailedError(asked.size === 0 ? `no provider of chunk ${cid.slice(-12)} found` : `could not fetch chunk ${cid.slice(-12)} (${errors.join('; ')})`)
        }
      }
    }
    await Promise.all(Array.from({ length: Math.min(PARALLEL_CHUNKS, layout.chunks.length) }, worker))
    const code = Buffer.concat(parts)
    if (code.byteLength !== layout.size || createHash('sha256').update(code).digest('hex') !== layout.sha256) {
      throw new FetchFailedError('assembled code does not match the manifest\'s size and sha256')
    }
    return { code, from: [...from] }
  }

  /**
   * Providers of a chunk from the DHT: the query stops at MAX_PROVIDERS, shortly after the first
   * ones turn up (a query runs on until its deadline when fewer exist), or after 5 s.
   */
  async #providers (cid: string, signal: AbortSignal): Promise<string[]> {
    const found: string[] = []
    if (this.#node.getConnections().length === 0) return found
    const settle = new AbortController()
    const bounded = AbortSignal.any([signal, AbortSignal.timeout(5000), settle.signal])
    let timer: NodeJS.Timeout | undefined
    try {
      for await (const event of this.#node.services.dht.findProviders(parseCid(cid), { signal: bounded })) {
        if (event.name !== 'PROVIDER') continue
        for (const p of event.providers) found.push(p.id.toString())
        if (found.length >= MAX_PROVIDERS) break
        timer ??= setTimeout(() => { settle.abort() }, PROVIDERS_SETTLE_MS)
      }
    } catch (err) {
      if (!settle.signal.aborted) log('findProviders %s: %s', cid, (err as Error).message)
    } finally {
      clearTimeout(timer)
    }
    return [...new Set(found)]
  }

  /** Distinct peers other than this one, the least penalised first (stable otherwise). */
  #ranked (peers: string[]): string[] {
    const self = this.#node.peerId.toString()
    return [...new Set(peers)].filter(p => p !== self).sort((a, b) => (this.#penalties.get(a) ?? 0) - (this.#penalties.get(b) ?? 0))
  }

  #penalise (peer: string, weight: number): void {
    this.#penalties.set(peer, (this.#penalties.get(peer) ?? 0) + weight)
  }

  /** Sends one request and collects the answer: a header (giving the size), then frames of bytes. */
  async #receive (peer: string, request: unknown, parseHeader: (header: unknown) => number, verify: (bytes: Uint8Array) => boolean, outer?: AbortSignal): Promise<Uint8Array> {
    const signal = outer ?? AbortSignal.timeout(30_000)
    let stream: Stream
    try {
      stream = await this.#node.dialProtocol(peerIdFromString(peer), FETCH_PROTOCOL, { signal })
    } catch (err) {
      this.#penalise(peer, 1)
      throw new FetchFailedError(`cannot reach: ${(err as Error).message}`, { cause: err })
    }
    return await new Promise<Uint8Array>((resolve, reject) => {
      let size: number | undefined
      const chunks: Uint8Array[] = []
      let received = 0
      const fail = (err: Error): void => {
        signal.removeEventListener('abort', onAbort)
        framed.abort(err)
        reject(err)
      }
      const onAbort = (): void => { fail(new FetchFailedError('fetch deadline exceeded')) }
      const framed = new FramedStream(stream, {
        maxFrameBytes: MAX_FETCH_FRAME_BYTES,
        onMessage: (message) => {
          try {
            if (size === undefined) {
              const m = message as { type?: unknown, message?: unknown }
              if (m?.type === 'error') throw new FetchFailedError(String(m.message ?? 'refused'))
              size = parseHeader(message)
              return
            }
            const { data } = validateFetchChunk(message, FETCH_CHUNK_BYTES)
            received += data.byteLength
            if (received > size) throw new FetchFailedError(`peer sent more than the ${size} bytes announced`)
            chunks.push(data)
          } catch (err) {
            fail(err as Error)
          }
        },
        onClose: (err) => {
          signal.removeEventListener('abort', onAbort)
          if (err !== undefined) { reject(new FetchFailedError(`stream failed: ${err.message}`, { cause: err })); return }
          if (size === undefined) { reject(new FetchFailedError('peer closed the stream without an answer')); return }
          if (received !== size) { reject(new FetchFailedError(`got ${received} of ${size} bytes`)); return }
          const bytes = Buffer.concat(chunks)
          if (!verify(bytes)) {
            this.#penalise(peer, 10)
            this.#onBadBytes(peer)
            reject(new FetchFailedError('bytes do not match their hash: provider penalised'))
            return
          }
          resolve(bytes)
        }
      })
      signal.addEventListener('abort', onAbort, { once: true })
      framed.write(request, { signal })
        .then(async () => { await stream.close({ signal }) })
        .catch((err: Error) => { fail(err) })
    })
  }
}

/** The list started at its i-th element (modulo its length). */
function rotate<T> (list: T[], i: number): T[] {
  const k = list.length === 0 ? 0 : i % list.length
  return [...list.slice(k), ...list.slice(0, k)]
}
