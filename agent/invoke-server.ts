import { logger } from '@libp2p/logger'
import {
  FramedStream, INVOKE_PROTOCOL, MAX_INVOKE_FRAME_BYTES, validateInvokeRequest, wireCodeOf, WIRE_VERSION,
  type InvokeRequest, type InvokeResult
} from '../protocol/index.js'
import { deadline } from './deadline.js'
import type { EdgeNode } from './node.js'
import type { Connection, Stream } from '@libp2p/interface'

const log = logger('edge:agent:invoke-server')

/** Runs an offloaded call here and only here (one hop: it is never offloaded again). */
export type ExecuteOffloaded = (request: InvokeRequest, from: string, signal: AbortSignal) => Promise<Omit<InvokeResult, 'v' | 'type' | 'id'>>

/**
 * Serves `/edge/invoke/1`. Callers keep long-lived streams and send many requests on each, tagged
 * by id; responses go back in completion order. A malformed frame closes the stream; a request
 * that fails validation gets a BAD_REQUEST answer.
 */
export class InvokeServer {
  readonly #node: EdgeNode
  readonly #execute: ExecuteOffloaded
  readonly #streams = new Set<FramedStream>()

  constructor (node: EdgeNode, execute: ExecuteOffloaded) {
    this.#node = node
    this.#execute = execute
  }

  async start (): Promise<void> {
    await this.#node.handle(INVOKE_PROTOCOL, (stream, connection) => { this.#accept(stream, connection) }, {
      maxInboundStreams: 256,
      maxOutboundStreams: 64
    })
  }

  async stop (): Promise<void> {
    await this.#node.unhandle(INVOKE_PROTOCOL)
    for (const s of this.#streams) s.abort(new Error('agent stopping'))
  }

  #accept (stream: Stream, connection: Connection): void {
    const from = connection.remotePeer.toString()
    const controller = new AbortController()
    const framed: FramedStream = new FramedStream(stream, {
      maxFrameBytes: MAX_INVOKE_FRAME_BYTES,
      onMessage: (message) => { void this.#handle(framed, message, from, controller.signal) },
      onClose: () => {
        this.#streams.delete(framed)
        controller.abort()
      }
    })
    this.#streams.add(framed)
  }

  async #handle (framed: FramedStream, message: unknown, from: string, streamSignal: AbortSignal): Promise<void> {
    const id = typeof (message as { id?: unknown })?.id === 'number' ? (message as { id: number }).id : 0
    let response: unknown
    let done: (() => void) | undefined
    try {
      const request = validateInvokeRequest(message)
      const call = deadline(streamSignal, request.deadlineMs)
      done = call.done
      const result = await this.#execute(request, from, call.signal)
      response = { v: WIRE_VERSION, type: 'result', id, ...result }
    } catch (err) {
      const e = err as Error & { stderr?: string }
      const code = e.name === 'InvalidMessageError' ? 'BAD_REQUEST' : wireCodeOf(err)
      if (code === 'INTERNAL') log.error('offloaded call from %s failed: %e', from, err)
      response = { v: WIRE_VERSION, type: 'error', id, code, message: e.message, ...(e.stderr !== undefined && e.stderr !== '' ? { stderr: e.stderr.slice(0, 64 * 1024) } : {}) }
    } finally {
      done?.()
    }
    if (framed.closed) return
    await framed.write(response).catch((err: Error) => { log('could not answer %s: %s', from, err.message) })
  }
}
