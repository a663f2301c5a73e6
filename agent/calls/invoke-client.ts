import { logger } from '../log.js'
import { peerIdFromString } from '@libp2p/peer-id'
import {
  abortError, errorFromWire, FramedStream, INVOKE_PROTOCOL, MAX_INVOKE_FRAME_BYTES, PeerGoneError,
  validateInvokeResponse, WIRE_VERSION, type FunctionRef, type InvokeResult, type PeerLoad, type WireCode
} from '../../protocol/index.js'
import type { EdgeNode } from '../swarm/node.js'

const log = logger('edge:agent:invoke-client')

interface Pending {
  resolve: (r: InvokeResult) => void
  reject: (e: Error) => void
}

/** One long-lived stream to a peer, shared by concurrent calls (opening a stream per call costs 1–3 ms). */
class Channel {
  readonly framed: FramedStream
  readonly pending = new Map<number, Pending>()

  constructor (framed: FramedStream) {
    this.framed = framed
  }
}

const reported = new WeakMap<Error, PeerLoad>()

/** The load the peer reported with the error it answered (BUSY and others), if it did. */
export function reportedLoad (err: unknown): PeerLoad | undefined {
  return err instanceof Error ? reported.get(err) : undefined
}

/** Attaches the load a peer answered with to the error built from its answer. */
export function withReportedLoad<E extends Error> (err: E, load: PeerLoad | undefined): E {
  if (load !== undefined) reported.set(err, load)
  return err
}

export interface RemoteCall {
  fn: FunctionRef
  input: Uint8Array
  deadlineMs: number
  holders: string[]
  queue: boolean
}

/** Client side of `/edge/invoke/1` with a stream pool of one multiplexed stream per peer. */
export class InvokeClient {
  readonly #node: EdgeNode
  readonly #channels = new Map<string, Promise<Channel>>()
  #nextId = 1

  constructor (node: EdgeNode) {
    this.#node = node
  }

  async stop (): Promise<void> {
    for (const [peer, channel] of this.#channels) {
      this.#channels.delete(peer)
      channel.then(c => { c.framed.abort(new Error('agent stopping')) }, () => {})
    }
  }

  /**
   * Sends one call and waits for its answer. Throws the wire error's class (BusyError, FunctionError,
   * …; `reportedLoad(err)` has the peer's load when it sent it), PeerGoneError when the stream died
   * first, or — when the signal aborts — its reason (cancelled, interrupted) or DeadlineExceededError.
   * A call given up on is cancelled at the peer, so that it stops taking a slot there.
   */
  async call (peer: string, call: RemoteCall, options: { signal: AbortSignal }): Promise<InvokeResult> {
    const channel = await this.#channel(peer, options.signal)
    const id = this.#nextId++
    return await new Promise<InvokeResult>((resolve, reject) => {
      const onAbort = (): void => {
        channel.pending.delete(id)
        if (!channel.framed.closed) {
          channel.framed.write({ v: WIRE_VERSION, type: 'cancel', id }).catch((err: Error) => { log('could not cancel call %d on %s: %s', id, short(peer), err.message) })
        }
        reject(abortError(options.signal, `no answer from ${short(peer)} before the deadline`))
      }
      if (options.signal.aborted) { reject(abortError(options.signal, `deadline exceeded before the call to ${short(peer)} was sent`)); return }
      options.signal.addEventListener('abort', onAbort, { once: true })
      channel.pending.set(id, {
        resolve: (r) => { options.signal.removeEventListener('abort', onAbort); resolve(r) },
        reject: (e) => { options.signal.removeEventListener('abort', onAbort); reject(e) }
      })
      channel.framed.write({ v: WIRE_VERSION, type: 'invoke', id, fn: call.fn, input: call.input, deadlineMs: Math.max(1, Math.floor(call.deadlineMs)), holders: call.holders, queue: call.queue }, options)
        .catch((err: Error) => {
          channel.pending.get(id)?.reject(new PeerGoneError(`could not send to ${short(peer)}: ${err.message}`, { cause: err }))
          channel.pending.delete(id)
        })
    })
  }

  async #channel (peer: string, signal: AbortSignal): Promise<Channel> {
    const existing = this.#channels.get(peer)
    if (existing !== undefined) {
      const channel = await existing.catch(() => undefined)
      if (channel !== undefined && !channel.framed.closed) return channel
      if (this.#channels.get(peer) === existing) this.#channels.delete(peer)
      return await this.#channel(peer, signal)
    }
    const opening = this.#open(peer, signal)
    this.#channels.set(peer, opening)
    opening.catch(() => { if (this.#channels.get(peer) === opening) this.#channels.delete(peer) })
    return await opening
  }

  async #open (peer: string, signal: AbortSignal): Promise<Channel> {
    let stream
    try {
      stream = await this.#node.dialProtocol(peerIdFromString(peer), INVOKE_PROTOCOL, { signal })
    } catch (err) {
      signal.throwIfAborted()
      throw new PeerGoneError(`cannot open ${INVOKE_PROTOCOL} to ${short(peer)}: ${(err as Error).message}`, { cause: err })
    }
    // The stream is long-lived: idle is normal, not a reason to close it.
    stream.inactivityTimeout = 0
    let channel: Channel | undefined
    const framed = new FramedStream(stream, {
      maxFrameBytes: MAX_INVOKE_FRAME_BYTES,
      onMessage: (message) => {
        if (channel === undefined) return
        let id: number | undefined
        try {
          const response = validateInvokeResponse(message)
          id = response.id
          const pending = channel.pending.get(response.id)
          if (pending === undefined) return
          channel.pending.delete(response.id)
          if (response.type === 'result') pending.resolve(response)
          else {
            pending.reject(withReportedLoad(errorFromWire(response.code as WireCode, response.message, response.stderr, response.retryAfterMs), response.load))
          }
        } catch (err) {
          log.error('bad response from %s: %s', short(peer), (err as Error).message)
          if (id !== undefined) channel.pending.get(id)?.reject(err as Error)
        }
      },
      onClose: (err) => {
        if (this.#channels.get(peer) !== undefined) void this.#channels.get(peer)?.then(c => { if (c === channel) this.#channels.delete(peer) }, () => {})
        if (channel === undefined) return
        for (const p of channel.pending.values()) {
          p.reject(new PeerGoneError(`stream to ${short(peer)} closed mid-call${err !== undefined ? `: ${err.message}` : ''}`))
        }
        channel.pending.clear()
      }
    })
    channel = new Channel(framed)
    return channel
  }
}

export function short (peerId: string): string {
  return peerId.length > 12 ? `…${peerId.slice(-8)}` : peerId
}
