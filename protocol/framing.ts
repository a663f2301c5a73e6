import { LengthPrefixedDecoder } from '@libp2p/utils'
import * as varint from 'uint8-varint'
import { Uint8ArrayList } from 'uint8arraylist'
import { decode, encode } from './codec.js'
import type { Stream } from '@libp2p/interface'

/**
 * Length-prefixed CBOR frames over a libp2p stream, event based (libp2p 3 streams have no
 * source/sink). One instance per stream; many requests may share it, matched by id.
 */
const RECEIVE_SLICE_BYTES = 64 * 1024
/**
 * Frames handled per turn of the event loop; the rest wait for the next turn. A peer that sends
 * thousands of frames at once (20,000 calls, each answered BUSY) had held the agent's event loop
 * for a second: its own API, and every other peer, waited. An invoke frame answered BUSY costs
 * about 0.5 ms (decode, checks, an encrypted answer); at 64 a turn, turns of 40–200 ms kept the
 * agent's status at 0.2–0.4 s during a flood, at 16 its p99 was 52–131 ms. Throughput is that of
 * the agent either way: a turn is short when little waits. Frames waiting are bounded by bytes:
 * past two of the largest frames (1 MiB at least) the stream is paused, so that the sender waits.
 * Not sooner: a paused libp2p stream resets once the remote has sent 4 MiB more, which a peer
 * answering large outputs at full speed would do.
 */
export const FRAMES_PER_TURN = 16
const HANDLED = new Uint8Array(0)

/**
 * The decoder's length reader. LengthPrefixedDecoder reads lengths until one is incomplete, which
 * it learns from a RangeError; varint's own reader throws a new one each time (every chunk of
 * whole frames ends with one), and capturing its stack under a socket's event dispatch was the
 * largest part of the long turns of the event loop in a flood of calls (~25 % of them). This one
 * throws one made once, without a stack.
 */
const INCOMPLETE = (() => {
  const limit = Error.stackTraceLimit
  Error.stackTraceLimit = 0
  try {
    return new RangeError('incomplete length prefix')
  } finally {
    Error.stackTraceLimit = limit
  }
})()
/** An unsigned LEB128 varint of up to 7 bytes (2^49, far past any frame limit) at the start of `buf`. */
function lengthOf (buf: Uint8ArrayList | Uint8Array): number {
  const end = Math.min(buf.byteLength, 7)
  let value = 0
  for (let i = 0; i < end; i++) {
    const b = buf instanceof Uint8Array ? buf[i] as number : buf.get(i)
    value += (b & 0x7f) * 2 ** (7 * i)
    if (b < 0x80) return value
  }
  if (end === 7) return Number.MAX_SAFE_INTEGER // longer than any frame: the decoder refuses it
  throw INCOMPLETE
}

export interface FramedInit {
  /** Largest frame accepted from the remote. */
  maxFrameBytes: number
  /** Largest frame this side may write (default: maxFrameBytes). */
  maxWriteBytes?: number
  /** Called with each decoded (but not yet validated) message, in order. */
  onMessage: (message: unknown) => void
  /** Called once when the stream closes, with the error if it did not end cleanly. */
  onClose?: (err?: Error) => void
}

export class FramedStream {
  readonly stream: Stream
  #decoder: LengthPrefixedDecoder
  #init: FramedInit
  #closed = false
  /** Frames received (length-delimited, not yet decoded) and not yet handled, from `#next` on. */
  #queue: Uint8Array[] = []
  #next = 0
  #queuedBytes = 0
  #turn: NodeJS.Immediate | undefined
  /** Frames handled in this turn of the event loop (a peer's frames come in many small events, each of a few frames). */
  #spent = 0
  #spentReset: NodeJS.Immediate | undefined
  /** The stream closed with frames still queued: they are handled first, then onClose is called. */
  #ending: { err: Error | undefined } | undefined
  /** Frames written and not yet sent, and the send they wait for (see write). */
  #outgoing = new Uint8ArrayList()
  #sent: Promise<boolean> | undefined

  constructor (stream: Stream, init: FramedInit) {
    this.stream = stream
    this.#init = init
    this.#decoder = new LengthPrefixedDecoder({ maxDataLength: init.maxFrameBytes, maxBufferSize: init.maxFrameBytes + RECEIVE_SLICE_BYTES + 16, lengthDecoder: lengthOf })
    stream.addEventListener('message', (evt) => { this.#receive(evt.data) })
    stream.addEventListener('close', (evt) => { this.#ended(evt.error) })
  }

  get closed (): boolean {
    return this.#closed || this.stream.status !== 'open'
  }

  /**
   * Writes one message; resolves once it is passed to the stream and the stream can take more.
   * Messages written in one run of the microtask queue leave together, in order, in one send:
   * each send is a muxer frame, a noise message and a pass of the swarm key's cipher, and a
   * stream answering a burst of requests (a flood answered BUSY, 16 a turn) had paid that for
   * every answer.
   */
  async write (message: unknown, options: { signal?: AbortSignal } = {}): Promise<void> {
    const body = encode(message)
    const max = this.#init.maxWriteBytes ?? this.#init.maxFrameBytes
    if (body.byteLength > max) throw new RangeError(`frame of ${body.byteLength} bytes exceeds ${max}`)
    this.#outgoing.append(varint.encode(body.byteLength), body)
    if (this.#sent === undefined) {
      this.#sent = new Promise<boolean>((resolve, reject) => {
        process.nextTick(() => {
          const frames = this.#outgoing
          this.#outgoing = new Uint8ArrayList()
          this.#sent = undefined
          try {
            resolve(this.stream.send(frames))
          } catch (err) {
            reject(err)
          }
        })
      })
      // Those who wrote hear of a failure; nobody else need.
      this.#sent.catch(() => {})
    }
    if (!await this.#sent) await this.stream.onDrain(options)
  }

  abort (err: Error): void {
    this.stream.abort(err)
    this.#finish(err)
  }

  async close (options: { signal?: AbortSignal } = {}): Promise<void> {
    await this.stream.close(options).catch((err: Error) => { this.stream.abort(err) })
  }

  #receive (data: Uint8Array | Uint8ArrayList): void {
    if (this.#closed) return
    try {
      // One event may carry many frames (megabytes when the sender is fast): feed the decoder in
      // slices, so that its buffer limit bounds what is pending, not what arrived at once.
      for (let off = 0; off < data.byteLength; off += RECEIVE_SLICE_BYTES) {
        const slice = data.byteLength <= RECEIVE_SLICE_BYTES ? data : data.subarray(off, Math.min(off + RECEIVE_SLICE_BYTES, data.byteLength))
        for (const frame of this.#decoder.decode(slice)) {
          this.#queue.push(frame.subarray())
          this.#queuedBytes += frame.byteLength
        }
      }
    } catch (err) {
      // A frame too large poisons the framing; nothing after it can be trusted.
      this.abort(err as Error)
      return
    }
    if (this.#turn === undefined) this.#handleSome()
    if (this.#queuedBytes > Math.max(2 * this.#init.maxFrameBytes, 1024 * 1024) && this.stream.readStatus === 'readable') this.stream.pause()
  }

  /** Handles queued frames in order, FRAMES_PER_TURN per turn of the event loop; the rest wait for the next turn. */
  #handleSome (): void {
    this.#turn = undefined
    while (this.#next < this.#queue.length) {
      if (this.#closed) return
      if (this.#spent >= FRAMES_PER_TURN) {
        this.#turn = setImmediate(() => { this.#handleSome() })
        return
      }
      if (this.#spent++ === 0) this.#spentReset = setImmediate(() => { this.#spent = 0 })
      const frame = this.#queue[this.#next] as Uint8Array
      // Let go of what is handled: a long flood never drains the queue to reset it.
      this.#queue[this.#next++] = HANDLED
      if (this.#next >= 4096) {
        this.#queue = this.#queue.slice(this.#next)
        this.#next = 0
      }
      this.#queuedBytes -= frame.byteLength
      try {
        this.#init.onMessage(decode(frame, this.#init.maxFrameBytes))
      } catch (err) {
        // A malformed frame poisons the framing; nothing after it can be trusted.
        this.abort(err as Error)
        return
      }
    }
    this.#queue = []
    this.#next = 0
    this.#queuedBytes = 0
    if (this.#ending !== undefined) this.#finish(this.#ending.err)
    else if (this.stream.readStatus === 'paused') this.stream.resume()
  }

  #ended (err?: Error): void {
    if (this.#turn === undefined) this.#finish(err)
    else this.#ending = { err }
  }

  #finish (err?: Error): void {
    if (this.#closed) return
    this.#closed = true
    clearImmediate(this.#turn)
    clearImmediate(this.#spentReset)
    this.#turn = undefined
    this.#queue = []
    this.#init.onClose?.(err)
  }
}

/**
 * A framed stream and its first message, for one-question protocols (hello, join): resolves with
 * it, rejects when the stream closes first or `signal` aborts. (A failure before anyone awaits
 * `first` is not unhandled.)
 */
export function framedOnce (stream: Stream, maxFrameBytes: number, signal: AbortSignal): { framed: FramedStream, first: Promise<unknown> } {
  let onAbort: () => void = () => {}
  let framed!: FramedStream
  const first = new Promise<unknown>((resolve, reject) => {
    onAbort = () => { reject(new Error('no answer before the deadline')) }
    signal.addEventListener('abort', onAbort, { once: true })
    framed = new FramedStream(stream, {
      maxFrameBytes,
      onMessage: (m) => { resolve(m) },
      onClose: (err) => { reject(err ?? new Error('stream closed before a message')) }
    })
  }).finally(() => { signal.removeEventListener('abort', onAbort) })
  first.catch(() => {})
  return { framed, first }
}
