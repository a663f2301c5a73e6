import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import { timingSafeEqual } from 'node:crypto'
import type { AddressInfo } from 'node:net'
import { logger } from '../../log.js'
import { BadRequestError, CancelledError, MAX_CODE_BYTES, MAX_IO_BYTES, MAX_RECORD_BYTES, RuntimeKind, SIGNED_RECORD_HEADER, validateContainerOptions, validateEnv } from '../../../protocol/index.js'
import { parseBytes, parseDuration } from '../../../protocol/index.js'
import type { Registry } from 'prom-client'
import type { DeployOptions, FunctionInfo, ManifestInfo, PeerInfo, ReadinessInfo, StatusInfo } from '../../../protocol/api.js'
import type { FunctionSpec } from '../../../protocol/messages.js'
import type { AsyncCalls, RequestSummary } from '../../calls/async-calls.js'
import type { CallLog } from '../../calls/call-log.js'
import type { InvokeOptions, Scheduler } from '../../calls/scheduler.js'
import { outcomeJson } from '../../calls/scheduler.js'
import { AddressInUseError } from '../../errors.js'
import type { CallLogEntry } from '../../calls/call-log.js'

const log = logger('edge:agent:api')

/** Maps error classes (by name) to HTTP statuses. Anything else is a 500 and is logged. */
const STATUS: Record<string, number> = {
  BadRequestError: 400,
  InvalidMessageError: 400,
  FunctionNotFoundError: 404,
  InvalidModuleError: 422,
  UntrustedManifestError: 403,
  FunctionError: 500,
  BusyError: 429,
  OverloadedError: 429,
  NoCandidateError: 503,
  PeerGoneError: 502,
  FetchFailedError: 502,
  DeadlineExceededError: 504,
  InterruptedError: 503,
  CancelledError: 499,
  ForeignRequestError: 403,
  UnsupportedMediaError: 415,
  VersionConflictError: 409,
  StorageFullError: 507
}

class HttpError extends Error {
  readonly status: number
  constructor (status: number, message: string) {
    super(message)
    this.status = status
    this.name = 'BadRequestError'
  }
}

/** A request for another host, from another site's page, or of a kind a web page can send unasked (DNS rebinding, CSRF). */
class ForeignRequestError extends HttpError {
  override name = 'ForeignRequestError'
  readonly code = 'FOREIGN_REQUEST'
  constructor (message: string) {
    super(403, message)
  }
}

/** An acting request whose body is not of the one type it takes. */
class UnsupportedMediaError extends HttpError {
  override name = 'UnsupportedMediaError'
  readonly code = 'UNSUPPORTED_MEDIA'
  constructor (message: string) {
    super(415, message)
  }
}

/** The body types each acting method takes: none a browser sends without asking (a form's text/plain, urlencoded, multipart). */
const BODY_TYPES: Record<string, string[]> = {
  POST: ['application/json'],
  PUT: ['application/octet-stream', 'application/wasm', 'application/x-tar']
}

/** Whether a Host header's name (port and IPv6 brackets removed) is this device itself. */
export function isLoopbackName (host: string): boolean {
  const name = host.toLowerCase().replace(/\.$/, '')
  return name === 'localhost' || name.endsWith('.localhost') || name === '::1' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(name)
}

/** The name in a Host header or an origin's authority: `[::1]:4000` → `::1`, `localhost:4000` → `localhost`. */
function hostName (authority: string): { name: string } {
  const m = /^(?:\[([^\]]+)\]|([^:]*))(?::\d*)?$/.exec(authority)
  return { name: (m?.[1] ?? m?.[2] ?? '').toLowerCase() }
}

/** `signal` aborts (CancelledError) when the client goes away before its answer. */
type Handler = (req: IncomingMessage, url: URL, params: string[], signal: AbortSignal) => Promise<unknown>

/** A handler's answer with a status other than 200. */
class Reply {
  constructor (readonly status: number, readonly body: unknown) {}
}

/** The longest a poll may wait for an async call to finish. */
const MAX_POLL_WAIT_MS = 60_000

/**
 * What the API serves from: the agent, seen through what the API needs of it. The server knows
 * no more of the agent than this (agent.ts passes itself).
 */
export interface ApiBackend {
  readonly peerId: string
  readonly config: { resultsTtlMs: number }
  readonly registry: { highestVersion: (name: string) => number }
  readonly calls: Pick<AsyncCalls, 'list' | 'get'>
  readonly metrics: { registry: Registry }
  readonly scheduler: Pick<Scheduler, 'invoke'>
  readonly callLog: Pick<CallLog, 'recent' | 'follow'>
  readiness: () => ReadinessInfo
  status: () => StatusInfo
  peerList: () => PeerInfo[]
  functionList: () => FunctionInfo[]
  manifest: (target: string) => Promise<ManifestInfo>
  deploy: (name: string, code: Uint8Array, options?: DeployOptions) => Promise<{ spec: FunctionSpec, shared: boolean }>
  delete: (target: string, record?: Uint8Array) => Promise<{ name: string, version: number }>
  prewarm: (target: string, count: number) => Promise<{ name: string, version: number, started: number, warm: number }>
  submit: (target: string, input: Uint8Array, options: InvokeOptions) => Promise<RequestSummary>
}

export interface ApiServerInit {
  host: string
  port: number
  /** When set, every request must carry `Authorization: Bearer <token>`. */
  token?: string
}

/**
 * The agent's HTTP API on 127.0.0.1 (JSON in and out). The CLI talks to the agent only through it.
 */
export class ApiServer {
  readonly #agent: ApiBackend
  readonly #init: ApiServerInit
  #server: Server | undefined
  #routes: Array<[method: string, pattern: RegExp, handler: Handler]>

  constructor (agent: ApiBackend, init: ApiServerInit) {
    this.#agent = agent
    this.#init = init
    const name = '([a-z0-9][a-z0-9._-]{0,62})'
    /** NAME or NAME@VERSION (checked further by parseTarget). */
    const target = '([a-z0-9][a-z0-9._-]{0,62}(?:(?:@|%40)[^/]*)?)'
    this.#routes = [
      // Liveness (the process answers) and readiness (started, not stopping, and joined when it has bootstrap peers to join).
      ['GET', /^\/healthz$/, async () => ({ ok: true })],
      ['GET', /^\/readyz$/, async () => {
        const r = this.#agent.readiness()
        return new Reply(r.ready ? 200 : 503, r)
      }],
      ['GET', /^\/v1\/status$/, async () => this.#agent.status()],
      ['GET', /^\/v1\/peers$/, async () => ({ peers: this.#agent.peerList() })],
      ['GET', /^\/v1\/functions$/, async () => ({ functions: this.#agent.functionList() })],
      ['PUT', new RegExp(`^/v1/functions/${name}$`), async (req, url, [fn]) => await this.#deploy(req, url, fn as string)],
      ['DELETE', new RegExp(`^/v1/functions/${target}$`), async (req, _url, [fn]) => await this.#agent.delete(fn as string, signedRecord(req))],
      ['GET', new RegExp(`^/v1/functions/${name}/version$`), async (_req, _url, [fn]) => ({ name: fn, highest: this.#agent.registry.highestVersion(fn as string) })],
      ['POST', new RegExp(`^/v1/functions/${target}/invoke$`), async (req, _url, [fn], signal) => await this.#invoke(req, fn as string, signal)],
      ['GET', new RegExp(`^/v1/functions/${target}/manifest$`), async (_req, _url, [fn]) => ({ manifest: await this.#agent.manifest(fn as string) })],
      ['POST', new RegExp(`^/v1/functions/${target}/prewarm$`), async (req, _url, [fn]) => await this.#prewarm(req, fn as string)],
      ['GET', /^\/v1\/logs$/, async (_req, url) => ({ entries: this.#logs(url) })],
      ['GET', /^\/v1\/requests$/, async () => ({ requests: this.#agent.calls.list().slice(0, 1000) })],
      ['GET', /^\/v1\/requests\/([^/]+)$/, async (_req, url, [id]) => await this.#poll(url, id as string)]
    ]
  }

  get url (): string {
    const addr = this.#server?.address() as AddressInfo | null
    if (addr == null) return ''
    const host = addr.family === 'IPv6' ? `[${addr.address}]` : addr.address
    return `http://${host}:${addr.port}`
  }

  async start (): Promise<void> {
    // Headers may carry a signed record (≤ 16 KiB, base64).
    const server = createServer({ maxHeaderSize: 64 * 1024 }, (req, res) => { void this.#handle(req, res) })
    server.keepAliveTimeout = 65_000
    await new Promise<void>((resolve, reject) => {
      server.once('error', (err: NodeJS.ErrnoException) => {
        reject(err.code === 'EADDRINUSE'
          ? new AddressInUseError(`API port ${this.#init.port} on ${this.#init.host} is in use: is another agent running? Use --api-port`)
          : err)
      })
      server.listen(this.#init.port, this.#init.host, () => { resolve() })
    })
    this.#server = server
  }

  async stop (): Promise<void> {
    const server = this.#server
    if (server === undefined) return
    await new Promise<void>((resolve) => {
      server.close(() => { resolve() })
      server.closeAllConnections()
    })
  }

  async #handle (req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://agent')
    const client = new AbortController()
    res.once('close', () => { if (!res.writableFinished) client.abort(new CancelledError('the client closed the connection before the answer')) })
    try {
      const token = this.#init.token ?? ''
      if (token !== '' && !tokenMatches(req.headers.authorization, token)) throw new HttpError(401, 'missing or wrong API token: set EDGE_API_TOKEN')
      this.#refuseForeign(req, token !== '')
      if (req.method === 'GET' && url.pathname === '/metrics') {
        const body = await this.#agent.metrics.registry.metrics()
        res.writeHead(200, { 'content-type': this.#agent.metrics.registry.contentType }).end(body)
        return
      }
      if (req.method === 'GET' && url.pathname === '/v1/logs' && url.searchParams.get('follow') === '1') {
        this.#followLogs(url, res)
        return
      }
      let matchedPath = false
      for (const [method, pattern, handler] of this.#routes) {
        const m = pattern.exec(url.pathname)
        if (m === null) continue
        matchedPath = true
        if (method !== req.method) continue
        const body = await handler(req, url, m.slice(1).map(decodePart), client.signal)
        if (body instanceof Reply) send(res, body.status, body.body)
        else send(res, 200, body)
        return
      }
      throw new HttpError(matchedPath ? 405 : 404, `${matchedPath ? 'method not allowed' : 'no such endpoint'}: ${req.method ?? ''} ${url.pathname}`)
    } catch (err) {
      const e = err as Error & { code?: string, stderr?: string, attempts?: unknown, status?: number, retryAfterMs?: number }
      if (client.signal.aborted) {
        log('%s %s: %s', req.method, url.pathname, e.message)
        return
      }
      const status = e.status ?? STATUS[e.name] ?? 500
      if (status === 500 && e.name !== 'FunctionError') log.error('%s %s failed: %e', req.method, url.pathname, err)
      const retryAfter = status === 429 || status === 503 ? { 'retry-after': String(Math.max(1, Math.ceil((e.retryAfterMs ?? 1000) / 1000))) } : undefined
      send(res, status, { error: { name: e.name, code: e.code ?? e.name, message: e.message, stderr: e.stderr, attempts: e.attempts, ...(e.retryAfterMs !== undefined ? { retryAfterMs: Math.ceil(e.retryAfterMs) } : {}) } }, retryAfter)
    }
  }

  /**
   * A web page in a browser on this device can reach the loopback API: a cross-site form posts
   * text/plain, and DNS rebinding makes a page's own name resolve to 127.0.0.1. So a request must
   * name this device in its Host (a loopback name or address, or the address the API listens on;
   * any, with the API's token, which no page has), must not come from another origin's page, and
   * an acting one must carry the body type it takes (which a page cannot send without a CORS
   * preflight, and the API answers none).
   */
  #refuseForeign (req: IncomingMessage, withToken: boolean): void {
    const host = req.headers.host ?? ''
    const { name } = hostName(host)
    if (!withToken && !isLoopbackName(name) && name !== this.#init.host.toLowerCase()) {
      throw new ForeignRequestError(`request for host '${host}' refused: this agent's API answers requests for localhost or 127.0.0.1 only (or, with its token, any name)`)
    }
    const origin = req.headers.origin
    if (origin !== undefined) {
      let own = false
      try {
        const o = new URL(origin)
        own = o.protocol === 'http:' && o.host === host.toLowerCase() && (withToken || isLoopbackName(hostName(o.host).name))
      } catch {}
      if (!own) throw new ForeignRequestError(`request from the web page at ${origin} refused: the agent's API takes no cross-origin requests`)
    }
    const types = BODY_TYPES[req.method ?? '']
    if (types !== undefined) {
      const type = (req.headers['content-type'] ?? '').split(';')[0]?.trim().toLowerCase() ?? ''
      if (!types.includes(type)) throw new UnsupportedMediaError(`${req.method ?? ''} takes a body of type ${types.join(' or ')}, not '${type === '' ? 'none' : type}'`)
    }
  }

  async #deploy (req: IncomingMessage, url: URL, name: string): Promise<unknown> {
    const code = await readBody(req, MAX_CODE_BYTES)
    const q = (k: string): string | undefined => url.searchParams.get(k) ?? undefined
    const memory = q('memory')
    const timeout = q('timeout')
    const runtime = q('runtime')
    const entry = q('entry')
    const env = q('env')
    const container = q('container')
    if (runtime !== undefined && !Object.values(RuntimeKind).includes(runtime as RuntimeKind)) {
      throw new BadRequestError(`unknown runtime '${runtime}': use ${Object.values(RuntimeKind).join(', ')}`)
    }
    const record = signedRecord(req)
    const { spec, shared } = await this.#agent.deploy(name, code, {
      ...(record !== undefined ? { record } : {}),
      ...(runtime !== undefined ? { runtime: runtime as RuntimeKind } : {}),
      ...(memory !== undefined ? { memoryBytes: parseBytes(memory) } : {}),
      ...(timeout !== undefined ? { timeoutMs: parseDuration(timeout) } : {}),
      ...(entry !== undefined ? { entry } : {}),
      ...(env !== undefined ? { env: validateEnv(json(env, 'env')) } : {}),
      ...(container !== undefined ? { container: validateContainerOptions(json(container, 'container')) } : {})
    })
    return { function: spec, holder: this.#agent.peerId, shared }
  }

  async #prewarm (req: IncomingMessage, target: string): Promise<unknown> {
    const body = await jsonBody(req)
    const count = body.count ?? 1
    if (typeof count !== 'number' || !Number.isInteger(count) || count < 1 || count > 1024) throw new BadRequestError('count must be an integer from 1 to 1024')
    return await this.#agent.prewarm(target, count)
  }

  async #invoke (req: IncomingMessage, name: string, signal: AbortSignal): Promise<unknown> {
    const body = await jsonBody(req, Math.ceil(MAX_IO_BYTES * 4 / 3) + 64 * 1024)
    let input: Uint8Array
    if (body.input !== undefined) {
      if (typeof body.input !== 'string') throw new BadRequestError('input must be base64 text')
      input = Buffer.from(body.input, 'base64')
    } else if (body.params !== undefined) {
      if (body.params === null || typeof body.params !== 'object' || Array.isArray(body.params)) throw new BadRequestError('params must be a JSON object')
      input = Buffer.from(JSON.stringify(body.params))
    } else {
      input = new Uint8Array(0)
    }
    if (input.byteLength > MAX_IO_BYTES) throw new BadRequestError(`input of ${input.byteLength} bytes exceeds ${MAX_IO_BYTES}`)
    const opt = (k: string): string | undefined => {
      const v = body[k]
      if (v === undefined || v === null) return undefined
      if (typeof v !== 'string') throw new BadRequestError(`${k} must be a string`)
      return v
    }
    let timeoutMs: number | undefined
    if (body.timeoutMs !== undefined) {
      if (typeof body.timeoutMs !== 'number' || !Number.isFinite(body.timeoutMs) || body.timeoutMs <= 0) throw new BadRequestError('timeoutMs must be a positive number')
      timeoutMs = body.timeoutMs
    }
    const policy = opt('policy')
    const peer = opt('peer')
    const options = {
      ...(policy !== undefined ? { policy } : {}),
      ...(peer !== undefined ? { peer, policy: 'peer' } : {}),
      ...(timeoutMs !== undefined ? { timeoutMs } : {})
    }
    if (body.async !== undefined && typeof body.async !== 'boolean') throw new BadRequestError('async must be true or false')
    if (body.async === true) return new Reply(202, { request: await this.#agent.submit(name, input, options) })
    return outcomeJson(await this.#agent.scheduler.invoke(name, input, { ...options, signal }), body.explain === true)
  }

  /** Recent calls that ran here: `?function=NAME` of one function, `?limit=N` (default 100) of the newest. */
  #logs (url: URL): unknown {
    const name = url.searchParams.get('function') ?? undefined
    const limit = Number(url.searchParams.get('limit') ?? 100)
    if (!Number.isInteger(limit) || limit < 1 || limit > 1000) throw new BadRequestError('limit must be an integer from 1 to 1000')
    return this.#agent.callLog.recent({ ...(name !== undefined ? { name } : {}), limit })
  }

  /**
   * `GET /v1/logs?follow=1` (`edge logs -f`): Server-Sent Events, one `data:` line of JSON per call
   * that ends here — the newest `limit` first, then each as it ends — until the client leaves. A
   * client that does not read is not waited for: past 1 MiB unsent, entries are dropped, and the
   * next that goes says how many (`dropped`).
   */
  #followLogs (url: URL, res: ServerResponse): void {
    const entries = this.#logs(url) as CallLogEntry[]
    const name = url.searchParams.get('function') ?? undefined
    res.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-store', 'x-accel-buffering': 'no' })
    let dropped = 0
    const send = (entry: CallLogEntry): void => {
      if (name !== undefined && entry.name !== name) return
      if (res.writableLength > 1024 * 1024) {
        dropped++
        return
      }
      res.write(`data: ${JSON.stringify(dropped > 0 ? { ...entry, dropped } : entry)}\n\n`)
      dropped = 0
    }
    for (const e of entries) send(e)
    const unfollow = this.#agent.callLog.follow(send)
    // A comment now and then keeps proxies and the client's idle timers from closing the stream.
    const ping = setInterval(() => { res.write(': ping\n\n') }, 15_000)
    ping.unref()
    res.once('close', () => {
      unfollow()
      clearInterval(ping)
    })
  }

  /** An async call's state, and its result once it has one; `?wait=MS` waits for it to finish. */
  async #poll (url: URL, id: string): Promise<unknown> {
    const wait = url.searchParams.get('wait')
    let waitMs = 0
    if (wait !== null) {
      waitMs = Number(wait)
      if (!Number.isInteger(waitMs) || waitMs < 0 || waitMs > MAX_POLL_WAIT_MS) throw new BadRequestError(`wait must be a number of ms from 0 to ${MAX_POLL_WAIT_MS}`)
    }
    const record = await this.#agent.calls.get(id, waitMs)
    if (record === undefined) throw new HttpError(404, `no async call '${id}' on this agent (results are kept for ${Math.round(this.#agent.config.resultsTtlMs / 60_000)} min)`)
    return { request: record }
  }
}

/** A JSON object body (an empty body is `{}`). */
async function jsonBody (req: IncomingMessage, limit = 64 * 1024): Promise<Record<string, unknown>> {
  const raw = await readBody(req, limit)
  let body: unknown
  try {
    body = raw.byteLength === 0 ? {} : JSON.parse(Buffer.from(raw).toString('utf8'))
  } catch {
    throw new BadRequestError('request body is not JSON')
  }
  if (body === null || typeof body !== 'object' || Array.isArray(body)) throw new BadRequestError('request body must be a JSON object')
  return body as Record<string, unknown>
}

function json (text: string, what: string): unknown {
  try {
    return JSON.parse(text)
  } catch {
    throw new BadRequestError(`${what} is not JSON`)
  }
}

/** A record the deployer signed with its own key (`edge deploy/delete --key`), if the request carries one. */
function signedRecord (req: IncomingMessage): Uint8Array | undefined {
  const header = req.headers[SIGNED_RECORD_HEADER]
  if (header === undefined) return undefined
  if (typeof header !== 'string' || !/^[A-Za-z0-9+/]+={0,2}$/.test(header)) throw new BadRequestError(`${SIGNED_RECORD_HEADER} must be one base64 value`)
  const bytes = Buffer.from(header, 'base64')
  if (bytes.byteLength > MAX_RECORD_BYTES) throw new BadRequestError(`signed record of ${bytes.byteLength} bytes exceeds ${MAX_RECORD_BYTES}`)
  return bytes
}

function decodePart (part: string): string {
  try {
    return decodeURIComponent(part)
  } catch {
    throw new BadRequestError(`badly escaped path segment '${part}'`)
  }
}

function tokenMatches (header: string | undefined, token: string): boolean {
  const given = Buffer.from(header ?? '')
  const want = Buffer.from(`Bearer ${token}`)
  return given.length === want.length && timingSafeEqual(given, want)
}

function send (res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = JSON.stringify(body)
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text), ...headers }).end(text)
}

async function readBody (req: IncomingMessage, limit: number): Promise<Uint8Array> {
  const declared = Number(req.headers['content-length'] ?? 0)
  if (declared > limit) {
    req.resume()
    throw new HttpError(413, `request body of ${declared} bytes exceeds the limit of ${limit}`)
  }
  return await new Promise((resolve, reject) => {
    const chunks: Buffer[] = []
    let size = 0
    req.on('data', (chunk: Buffer) => {
      size += chunk.byteLength
      if (size > limit) {
        req.removeAllListeners('data')
        req.resume()
        reject(new HttpError(413, `request body exceeds the limit of ${limit} bytes`))
        return
      }
      chunks.push(chunk)
    })
    req.on('end', () => { resolve(chunks.length === 1 ? chunks[0] as Buffer : Buffer.concat(chunks)) })
    req.on('error', reject)
  })
}
