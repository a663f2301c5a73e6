import { setMaxListeners } from 'node:events'
import { heldBack, logger, Throttle } from '../log.js'
import {
  BusyError, CancelledError, FramedStream, InterruptedError, INVOKE_PROTOCOL, MAX_INVOKE_FRAME_BYTES, validateInvokeFrame, WireCode, wireCodeOf, WIRE_VERSION,
  type FunctionRef, type InvokeRequest, type InvokeResult, type PeerLoad
} from '../../protocol/index.js'
import { deadline, settledWithin } from '../deadline.js'
import type { EdgeNode } from '../swarm/node.js'
import type { Connection, Stream } from '@libp2p/interface'

/** Refused peers are logged once a minute each. */
const refusedPeers = new Throttle(60_000)
const log = logger('edge:agent:invoke-server')

/** Runs an offloaded call here and only here (one hop: it is never offloaded again). */
export type ExecuteOffloaded = (request: InvokeRequest, from: string, signal: AbortSignal) => Promise<Omit<InvokeResult, 'v' | 'type' | 'id'>>

/** This agent's load for the runtime that runs `fn` (undefined when it does not know the function). */
export type LoadOf = (fn: FunctionRef) => Omit<PeerLoad, 'yours'> | undefined

/** Calls of one peer running or queued here at once; more are answered BUSY at once, without a look at the function. */
export const MAX_CALLS_PER_PEER = 64
/** Requests on one stream that fail validation before the stream is closed (a peer that keeps sending them is broken or hostile). */
export const MAX_INVALID_FRAMES = 8

/**
 * Serves `/edge/invoke/1`. Callers keep long-lived streams and send many requests on each, tagged
 * by id; responses go back in completion order, each with this agent's load, so that callers see
 * a freed slot before the next advert. A `cancel` frame stops a call that its caller gave up on. A
 * malformed frame closes the stream; a request that fails validation gets a BAD_REQUEST answer.
 */
export class InvokeServer {
  readonly #node: EdgeNode
  readonly #execute: ExecuteOffloaded
  readonly #loadOf: LoadOf
  readonly #streams = new Set<FramedStream>()
  /** Calls running or queued here, per caller: answers tell each caller how many of its own are left. */
  readonly #perCaller = new Map<string, number>()
  /** Aborted when the agent stops: calls cut off so are interrupted, not failed. */
  #stopping = new AbortController()
  /** Calls being handled, until their answer is written. */
  readonly #handling = new Set<Promise<void>>()

  readonly #authorised: (peerId: string) => boolean

  /** `authorised`: the peers whose calls are taken; any other gets one UNTRUSTED answer and its stream closed. */
  constructor (node: EdgeNode, execute: ExecuteOffloaded, loadOf: LoadOf = () => undefined, authorised: (peerId: string) => boolean = () => true) {
    this.#node = node
    this.#execute = execute
    this.#loadOf = loadOf
    this.#authorised = authorised
  }

  async start (): Promise<void> {
    this.#stopping = new AbortController()
    // Every call being served listens to it.
    setMaxListeners(Infinity, this.#stopping.signal)
    await this.#node.handle(INVOKE_PROTOCOL, (stream, connection) => { this.#accept(stream, connection) }, {
      maxInboundStreams: 256,
      maxOutboundStreams: 64
    })
  }

  /**
   * Stops taking calls, cuts off those running (their callers are answered INTERRUPTED, and try
   * elsewhere), gives the answers a moment to leave, then closes the streams.
   */
  async stop (graceMs = 1000): Promise<void> {
    await this.#node.unhandle(INVOKE_PROTOCOL)
    this.#stopping.abort(new InterruptedError('the agent running the call is stopping'))
    if (this.#handling.size > 0) await settledWithin([...this.#handling], graceMs)
    for (const s of this.#streams) s.abort(new Error('agent stopping'))
  }

  #accept (stream: Stream, connection: Connection): void {
    const from = connection.remotePeer.toString()
    // The calls of this stream by id, to cancel them; all of them end when the stream does.
    const calls = new Map<number, AbortController>()
    const invalid = { count: 0 }
    const framed: FramedStream = new FramedStream(stream, {
      maxFrameBytes: MAX_INVOKE_FRAME_BYTES,
      onMessage: (message) => {
        if (invalid.count >= MAX_INVALID_FRAMES) return
        // Trust is checked per request: an untrusted caller's first one is answered UNTRUSTED, and
        // a key removed while its stream is open stops there; nothing more is read.
        if (!this.#authorised(from)) {
          invalid.count = MAX_INVALID_FRAMES
          this.#answerUntrusted(framed, message, from)
          return
        }
        const handled = this.#handle(framed, message, from, calls, invalid).finally(() => { this.#handling.delete(handled) })
        this.#handling.add(handled)
      },
      onClose: () => {
        this.#streams.delete(framed)
        for (const c of calls.values()) c.abort(new CancelledError(`the stream from ${from} closed`))
        calls.clear()
      }
    })
    this.#streams.add(framed)
  }

  /** Answers `message` UNTRUSTED (so that the caller knows why), then closes the stream. */
  #answerUntrusted (framed: FramedStream, message: unknown, from: string): void {
    const id = typeof (message as { id?: unknown })?.id === 'number' ? (message as { id: number }).id : 0
    const held = refusedPeers.allow(from)
    if (held !== undefined) log.info('refused a call from %s, a peer this agent does not trust%s', from, heldBack(held))
    void framed.write({ v: WIRE_VERSION, type: 'error', id, code: WireCode.UNTRUSTED, message: `this agent takes calls only from peers it trusts, and not from ${from}` })
      .then(async () => { await framed.close() })
      .catch(() => { framed.abort(new Error('untrusted caller')) })
  }

  async #handle (framed: FramedStream, message: unknown, from: string, calls: Map<number, AbortController>, invalid: { count: number }): Promise<void> {
    const id = typeof (message as { id?: unknown })?.id === 'number' ? (message as { id: number }).id : 0
    let response: Record<string, unknown>
    let done: (() => void) | undefined
    let fn: FunctionRef | undefined
    let counted = false
    try {
      const frame = validateInvokeFrame(message)
      if (frame.type === 'cancel') {
        calls.get(frame.id)?.abort(new CancelledError('the caller cancelled the call'))
        return
      }
      fn = frame.fn
      if ((this.#perCaller.get(from) ?? 0) >= MAX_CALLS_PER_PEER) throw new BusyError(`${MAX_CALLS_PER_PEER} calls of yours are running or queued here already`, { retryAfterMs: 1000 })
      if (calls.has(id)) throw Object.assign(new Error(`call id ${id} is already running on this stream`), { name: 'InvalidMessageError' })
      const controller = new AbortController()
      calls.set(id, controller)
      const call = deadline([controller.signal, this.#stopping.signal], frame.deadlineMs)
      done = () => { call.done(); calls.delete(id) }
      this.#perCaller.set(from, (this.#perCaller.get(from) ?? 0) + 1)
      counted = true
      const result = await this.#execute(frame, from, call.signal)
      response = { v: WIRE_VERSION, type: 'result', id, ...result }
    } catch (err) {
      const e = err as Error & { stderr?: string, retryAfterMs?: number }
      const code = e.name === 'InvalidMessageError' ? 'BAD_REQUEST' : wireCodeOf(err)
      if (code === 'INTERNAL') log.error('offloaded call from %s failed: %e', from, err)
      response = {
        v: WIRE_VERSION,
        type: 'error',
        id,
        code,
        message: e.message,
        ...(e.stderr !== undefined && e.stderr !== '' ? { stderr: e.stderr.slice(0, 64 * 1024) } : {}),
        ...(typeof e.retryAfterMs === 'number' ? { retryAfterMs: Math.max(0, Math.ceil(e.retryAfterMs)) } : {})
      }
    } finally {
      done?.()
      if (counted) {
        const left = (this.#perCaller.get(from) ?? 1) - 1
        if (left > 0) this.#perCaller.set(from, left)
        else this.#perCaller.delete(from)
      }
    }
    if (framed.closed) return
    const load = fn === undefined ? undefined : this.#loadOf(fn)
    if (load !== undefined) response.load = { ...load, yours: this.#perCaller.get(from) ?? 0 }
    if (response.code === 'BAD_REQUEST' && ++invalid.count >= MAX_INVALID_FRAMES) {
      // The answer leaves (close passes it to the transport), then nothing more is read.
      log('closing the stream of %s after %d invalid requests', from, invalid.count)
      await framed.write(response).catch(() => {})
      await framed.close({ signal: AbortSignal.timeout(1000) })
      framed.abort(new Error(`${invalid.count} invalid requests`))
      return
    }
    await framed.write(response).catch((err: Error) => { log('could not answer %s: %s', from, err.message) })
  }
}
