import { createHash } from 'node:crypto'
import { logger } from '@libp2p/logger'
import { peerIdFromString } from '@libp2p/peer-id'
import {
  FETCH_CHUNK_BYTES, FETCH_PROTOCOL, FetchFailedError, FramedStream, MAX_FETCH_FRAME_BYTES, validateFetchChunk,
  validateFetchHeader, validateFetchRequest, WIRE_VERSION, type FunctionRef, type FunctionSpec
} from '../protocol/index.js'
import type { FunctionRegistry } from './registry.js'
import type { EdgeNode } from './node.js'
import type { Stream } from '@libp2p/interface'

const log = logger('edge:agent:fetch')

export interface FetchedCode {
  spec: FunctionSpec
  code: Uint8Array
  from: string
}

/**
 * `/edge/fetch/1`: one stream per fetch. The client sends {sha256}; the server answers with a
 * header carrying the function's spec, then the code in chunks, then closes. The client checks
 * the size and the sha256 before anyone runs the code.
 */
export class FetchService {
  readonly #node: EdgeNode
  readonly #registry: FunctionRegistry
  readonly #inflight = new Map<string, Promise<FetchedCode>>()

  constructor (node: EdgeNode, registry: FunctionRegistry) {
    this.#node = node
    this.#registry = registry
  }

  async start (): Promise<void> {
    await this.#node.handle(FETCH_PROTOCOL, (stream) => { void this.#serve(stream) }, { maxInboundStreams: 32, maxOutboundStreams: 32 })
  }

  async stop (): Promise<void> {
    await this.#node.unhandle(FETCH_PROTOCOL)
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
      const ref = validateFetchRequest(request)
      const spec = this.#registry.specOf(ref)
      const code = await this.#registry.readCode(ref.sha256)
      const sha256 = ref.sha256
      if (spec === undefined || code === undefined) {
        await out.write({ v: WIRE_VERSION, type: 'error', code: 'NOT_FOUND', message: `no code for ${sha256.slice(0, 12)} here` }, { signal })
      } else {
        await out.write({ v: WIRE_VERSION, type: 'fetch-ok', fn: spec }, { signal })
        for (let off = 0; off < code.length; off += FETCH_CHUNK_BYTES) {
          await out.write({ v: WIRE_VERSION, type: 'chunk', data: code.subarray(off, off + FETCH_CHUNK_BYTES) }, { signal })
        }
      }
      await out.close({ signal })
    } catch (err) {
      log('fetch request failed: %s', (err as Error).message)
      stream.abort(err as Error)
    }
  }

  /** Fetches code by hash from the first of `peers` that has it; concurrent calls share one fetch. */
  async fetch (ref: FunctionRef, peers: string[], options: { signal?: AbortSignal } = {}): Promise<FetchedCode> {
    const id = `${ref.name}@${ref.version}:${ref.sha256}`
    const running = this.#inflight.get(id)
    if (running !== undefined) return await running
    const p = this.#fetchFromAny(ref, peers, options).finally(() => { this.#inflight.delete(id) })
    this.#inflight.set(id, p)
    return await p
  }

  async #fetchFromAny (ref: FunctionRef, peers: string[], options: { signal?: AbortSignal }): Promise<FetchedCode> {
    const sha256 = ref.sha256
    const errors: string[] = []
    for (const peer of peers) {
      if (peer === this.#node.peerId.toString()) continue
      try {
        return await this.fetchFrom(peer, ref, options)
      } catch (err) {
        options.signal?.throwIfAborted()
        errors.push(`${peer.slice(-8)}: ${(err as Error).message}`)
      }
    }
    throw new FetchFailedError(peers.length === 0
      ? `no peer is known to hold code ${sha256.slice(0, 12)}`
      : `could not fetch code ${sha256.slice(0, 12)} (${errors.join('; ')})`)
  }

  async fetchFrom (peer: string, ref: FunctionRef, options: { signal?: AbortSignal } = {}): Promise<FetchedCode> {
    const { name, version, sha256 } = ref
    const signal = options.signal ?? AbortSignal.timeout(30_000)
    const stream = await this.#node.dialProtocol(peerIdFromString(peer), FETCH_PROTOCOL, { signal })
    return await new Promise<FetchedCode>((resolve, reject) => {
      let spec: FunctionSpec | undefined
      const chunks: Uint8Array[] = []
      let received = 0
      const hash = createHash('sha256')
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
            if (spec === undefined) {
              const m = message as { type?: unknown, message?: unknown }
              if (m?.type === 'error') throw new FetchFailedError(String(m.message ?? 'refused'))
              spec = validateFetchHeader(message).fn
              if (spec.sha256 !== sha256 || spec.name !== name || spec.version !== version) throw new FetchFailedError('peer answered with another function')
              return
            }
            const { data } = validateFetchChunk(message, FETCH_CHUNK_BYTES)
            received += data.byteLength
            if (received > spec.size) throw new FetchFailedError(`peer sent more than the ${spec.size} bytes announced`)
            hash.update(data)
            chunks.push(data)
          } catch (err) {
            fail(err as Error)
          }
        },
        onClose: (err) => {
          signal.removeEventListener('abort', onAbort)
          if (err !== undefined) { reject(new FetchFailedError(`stream failed: ${err.message}`, { cause: err })); return }
          if (spec === undefined) { reject(new FetchFailedError('peer closed the stream without an answer')); return }
          if (received !== spec.size) { reject(new FetchFailedError(`got ${received} of ${spec.size} bytes`)); return }
          const digest = hash.digest('hex')
          if (digest !== sha256) { reject(new FetchFailedError(`hash mismatch: got ${digest.slice(0, 12)}, want ${sha256.slice(0, 12)}`)); return }
          resolve({ spec, code: Buffer.concat(chunks), from: peer })
        }
      })
      signal.addEventListener('abort', onAbort, { once: true })
      framed.write({ v: WIRE_VERSION, type: 'fetch', name, version, sha256 }, { signal })
        .then(async () => { await stream.close({ signal }) })
        .catch((err: Error) => { fail(err) })
    })
  }
}
