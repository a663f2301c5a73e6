import { createSocket, type RemoteInfo, type Socket } from 'node:dgram'
import { EventEmitter } from 'node:events'
import { isIPv6 } from 'node:net'
import { logger } from '../log.js'
import { createServer, type IncomingMessage, type OutgoingMessage, type Server } from 'coap'
import { generate, parse, type ParsedPacket } from 'coap-packet'
import { BadRequestError, InterruptedError, parseDuration } from '../../protocol/index.js'
import type { InvokeOptions, InvokeOutcome } from '../calls/scheduler.js'
import type { RequestRecord } from '../calls/journal.js'
import type { RequestSummary } from '../calls/async-calls.js'
import { AddressInUseError } from '../errors.js'

const log = logger('edge:agent:coap')

/** Largest request payload taken over CoAP (block-wise transfers included): constrained devices send little. */
export const MAX_COAP_INPUT = 64 * 1024
/** Responses kept for deduplicating retransmissions: small, for small boards. */
const RESPONSE_CACHE_BYTES = 1024 * 1024

/** CoAP response codes per error class name (RFC 7252 §12.1.2). */
const CODES: Record<string, string> = {
  BadRequestError: '4.00',
  InvalidMessageError: '4.00',
  UntrustedManifestError: '4.03',
  FunctionNotFoundError: '4.04',
  FunctionError: '5.00',
  BusyError: '5.03',
  OverloadedError: '5.03',
  InterruptedError: '5.03',
  NoCandidateError: '5.03',
  PeerGoneError: '5.02',
  FetchFailedError: '5.02',
  DeadlineExceededError: '5.04'
}

class CoapError extends Error {
  constructor (readonly code: string, message: string) {
    super(message)
  }
}

/** What the CoAP ingress needs of the agent. */
export interface CoapBackend {
  invoke: (target: string, input: Uint8Array, options: InvokeOptions) => Promise<InvokeOutcome>
  submit: (target: string, input: Uint8Array, options: InvokeOptions) => Promise<RequestSummary>
  poll: (id: string) => Promise<RequestRecord | undefined>
}

/**
 * CoAP ingress (as tinyFaaS) for devices too small for HTTP: `POST coap://agent/NAME[@VERSION]`
 * with the input as payload answers 2.05 with the output; `?near`, `?local`, `?policy=P`,
 * `?peer=ID`, `?timeout=5s` place it as `edge invoke` does; `?async` answers 2.01 with an id to
 * `GET /requests/ID` later (5.03 with Max-Age while it runs). Errors are CoAP codes with a one-line
 * diagnostic payload. Off unless `--coap-listen` is given; there is no authentication, so anyone who
 * reaches the port can run this agent's functions (never deploy or delete them).
 */
export class CoapIngress {
  readonly #backend: CoapBackend
  readonly #host: string
  readonly #port: number
  #socket: Socket | undefined
  #server: Server | undefined
  /** Aborted when the ingress stops: its calls still running are cut off as interrupted. */
  #stopping = new AbortController()

  constructor (backend: CoapBackend, listen: string) {
    this.#backend = backend
    const { host, port } = parseListen(listen)
    this.#host = host
    this.#port = port
  }

  get url (): string {
    const addr = this.#socket?.address()
    if (addr === undefined) return ''
    return `coap://${addr.family === 'IPv6' ? `[${addr.address}]` : addr.address}:${addr.port}`
  }

  async start (): Promise<void> {
    this.#stopping = new AbortController()
    const socket = createSocket({ type: isIPv6(this.#host) ? 'udp6' : 'udp4' })
    await new Promise<void>((resolve, reject) => {
      socket.once('error', (err: NodeJS.ErrnoException) => {
        reject(err.code === 'EADDRINUSE' ? new AddressInUseError(`CoAP port ${this.#port} on ${this.#host} is in use: use another --coap-listen`) : err)
      })
      socket.bind(this.#port, this.#host, () => { resolve() })
    })
    socket.on('error', (err) => { log.error('CoAP socket: %s', err.message) })
    // The library sees only datagrams that pass the checks below, through a socket of our own.
    const front = new FilteredSocket(socket)
    const server = createServer({ type: isIPv6(this.#host) ? 'udp6' : 'udp4', cacheSize: RESPONSE_CACHE_BYTES })
    server.on('request', (req: IncomingMessage, res: OutgoingMessage) => { void this.#handle(req, res) })
    server.on('error', (err: Error) => { log('CoAP: %s', err.message) })
    server.listen(front)
    this.#socket = socket
    this.#server = server
  }

  async stop (): Promise<void> {
    this.#stopping.abort(new InterruptedError('the CoAP ingress is stopping'))
    this.#server?.close()
    this.#server = undefined
    const socket = this.#socket
    this.#socket = undefined
    if (socket !== undefined) await new Promise<void>(resolve => { socket.close(() => { resolve() }) })
  }

  async #handle (req: IncomingMessage, res: OutgoingMessage): Promise<void> {
    try {
      const url = new URL(req.url, 'coap://agent')
      const parts = url.pathname.split('/').filter(p => p !== '').map(decodePart)
      if (parts[0] === 'requests' && parts.length === 2) {
        if (req.method !== 'GET') throw new CoapError('4.05', 'use GET for /requests/ID')
        await this.#poll(parts[1] as string, res)
        return
      }
      if (parts.length !== 1) throw new CoapError('4.04', `no such resource: ${url.pathname}: POST /NAME to run a function, GET /requests/ID for an async result`)
      if (req.method !== 'POST' && req.method !== 'PUT') throw new CoapError('4.05', 'use POST /NAME to run a function')
      const input = req.payload
      if (input.byteLength > MAX_COAP_INPUT) throw new CoapError('4.13', `input of ${input.byteLength} bytes exceeds ${MAX_COAP_INPUT}`)
      const target = parts[0] as string
      const options = invokeOptions(url.searchParams)
      if (url.searchParams.has('async')) {
        const accepted = await this.#backend.submit(target, input, options)
        res.code = '2.01'
        res.setOption('Location-Path', [Buffer.from('requests'), Buffer.from(accepted.id)])
        res.end(accepted.id)
        return
      }
      // UDP tells nothing of a client that left: the call ends at its deadline, or when this ingress stops.
      const outcome = await this.#backend.invoke(target, input, { ...options, signal: this.#stopping.signal })
      res.code = '2.05'
      res.end(Buffer.from(outcome.output))
    } catch (err) {
      const e = err as Error & { code?: string, retryAfterMs?: number }
      const code = err instanceof CoapError ? err.code : CODES[e.name] ?? '5.00'
      if (code === '5.00' && e.name !== 'FunctionError') log.error('CoAP %s %s failed: %e', req.method, req.url, err)
      res.code = code
      // 5.03 with Max-Age: when to try again (RFC 7252 5.9.3.4).
      if (code === '5.03' && typeof e.retryAfterMs === 'number') res.setOption('Max-Age', Math.max(1, Math.ceil(e.retryAfterMs / 1000)))
      res.end(oneLine(e.message))
    }
  }

  async #poll (id: string, res: OutgoingMessage): Promise<void> {
    const record = await this.#backend.poll(id)
    if (record === undefined) throw new CoapError('4.04', `no async call '${id}' on this agent`)
    if (record.state === 'done') {
      res.code = '2.05'
      res.end(Buffer.from(String(record.result?.output ?? ''), 'base64'))
    } else if (record.state === 'failed') {
      res.code = CODES[record.error?.name ?? ''] ?? '5.00'
      res.end(oneLine(record.error?.message ?? 'failed'))
    } else {
      // Not yet: come back in a second.
      res.code = '5.03'
      res.setOption('Max-Age', 1)
      res.end(record.state)
    }
  }
}

function invokeOptions (q: URLSearchParams): InvokeOptions {
  const options: InvokeOptions = {}
  const policy = q.get('policy')
  const peer = q.get('peer')
  const timeout = q.get('timeout')
  if (q.has('near')) options.policy = 'near'
  if (q.has('local')) options.policy = 'local'
  if (policy !== null) options.policy = policy
  if (peer !== null) {
    options.policy = 'peer'
    options.peer = peer
  }
  if (timeout !== null) options.timeoutMs = parseDuration(timeout)
  return options
}

/** "host:port", "[v6]:port" or ":port" (all IPv4 interfaces). */
export function parseListen (listen: string): { host: string, port: number } {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:[\]]*)):(\d{1,5})$/.exec(listen.trim())
  const port = Number(m?.[3])
  if (m === null || port > 65535) throw new BadRequestError(`bad CoAP listen address '${listen}': use HOST:PORT, e.g. 0.0.0.0:5683 or 127.0.0.1:0`)
  const host = m[1] ?? (m[2] === '' || m[2] === undefined ? '0.0.0.0' : m[2])
  return { host, port }
}

function decodePart (part: string): string {
  try {
    return decodeURIComponent(part)
  } catch {
    throw new CoapError('4.00', `badly escaped path segment '${part}'`)
  }
}

function oneLine (message: string): string {
  return message.replace(/\s*\n\s*/g, ' ').slice(0, 1024)
}

/**
 * The server's view of the UDP socket: datagrams that are not CoAP, or that announce a block-wise
 * request beyond MAX_COAP_INPUT, never reach the library (which would buffer, or allocate, what
 * such a request claims); the sender gets 4.13 for the latter.
 */
class FilteredSocket extends EventEmitter {
  readonly #socket: Socket

  constructor (socket: Socket) {
    super()
    this.#socket = socket
    socket.on('message', (msg: Buffer, rinfo: RemoteInfo) => {
      let packet: ParsedPacket
      try {
        packet = parse(msg)
      } catch {
        return
      }
      const block1 = packet.options.find(o => o.name === 'Block1')?.value
      if (block1 !== undefined && blockEnd(block1) > MAX_COAP_INPUT) {
        if (packet.confirmable) this.#reject(packet, rinfo)
        return
      }
      this.emit('message', msg, rinfo)
    })
  }

  send (...args: unknown[]): void {
    (this.#socket.send as (...a: unknown[]) => void)(...args)
  }

  address (): ReturnType<Socket['address']> {
    return this.#socket.address()
  }

  #reject (packet: ParsedPacket, rinfo: RemoteInfo): void {
    const reply = generate({
      messageId: packet.messageId,
      token: packet.token,
      code: '4.13',
      ack: true,
      options: [{ name: 'Size1', value: uint(MAX_COAP_INPUT) }],
      payload: Buffer.from(`request larger than ${MAX_COAP_INPUT} bytes`)
    })
    this.#socket.send(reply, rinfo.port, rinfo.address)
  }
}

/** The byte just past a Block1 option's block: (num + 1) × size (RFC 7959 §2.2). */
function blockEnd (value: Buffer): number {
  if (value.length === 0 || value.length > 3) return Number.POSITIVE_INFINITY
  const n = value.readUIntBE(0, value.length)
  const szx = n & 0x7
  if (szx === 7) return Number.POSITIVE_INFINITY
  return ((n >> 4) + 1) * 2 ** (szx + 4)
}

function uint (n: number): Buffer {
  const b = Buffer.alloc(4)
  b.writeUInt32BE(n)
  return b
}
