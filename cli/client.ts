import { Agent as HttpAgent, request } from 'node:http'
import { UserError } from './errors.js'
import { SIGNED_RECORD_HEADER } from '../protocol/protocols.js'
import type { ContainerOptions, FunctionSpec, RuntimeKind } from '../protocol/messages.js'
import type { AsyncRequest, Attempt, CallLogEntry, FunctionInfo, InvokeResponse, ManifestInfo, PeerInfo, StatusInfo } from '../protocol/api.js'

const keepAlive = new HttpAgent({ keepAlive: true, maxSockets: 64 })

/** Bytes of a request body written per step, so that large uploads can report progress. */
const UPLOAD_STEP = 256 * 1024

export type Progress = (sent: number, total: number) => void

async function send (url: string, method: string, body: Uint8Array | string | undefined, timeoutMs: number, onProgress?: Progress, extra: Record<string, string> = {}): Promise<{ status: number, text: string }> {
  return await new Promise((resolve, reject) => {
    const req = request(url, {
      method,
      agent: keepAlive,
      timeout: timeoutMs,
      headers: {
        ...(process.env.EDGE_API_TOKEN !== undefined ? { authorization: `Bearer ${process.env.EDGE_API_TOKEN}` } : {}),
        'content-type': typeof body === 'string' ? 'application/json' : 'application/octet-stream',
        'content-length': body === undefined ? 0 : Buffer.byteLength(body),
        ...extra
      }
    }, (res) => {
      const chunks: Buffer[] = []
      res.on('data', (c: Buffer) => chunks.push(c))
      res.on('end', () => { resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString('utf8') }) })
      res.on('error', reject)
    })
    req.on('timeout', () => { req.destroy(Object.assign(new Error('timed out'), { name: 'TimeoutError' })) })
    req.on('error', reject)
    if (onProgress === undefined || body === undefined || typeof body === 'string') {
      req.end(body)
      return
    }
    const write = async (): Promise<void> => {
      for (let off = 0; off < body.byteLength; off += UPLOAD_STEP) {
        const more = req.write(body.subarray(off, off + UPLOAD_STEP))
        onProgress(Math.min(off + UPLOAD_STEP, body.byteLength), body.byteLength)
        if (!more) await new Promise<void>((resolve) => { req.once('drain', resolve) })
      }
      req.end()
    }
    write().catch(reject)
  })
}


function signed (record: Uint8Array | undefined): Record<string, string> | undefined {
  return record === undefined ? undefined : { [SIGNED_RECORD_HEADER]: Buffer.from(record).toString('base64') }
}

/** Typed client of the agent's HTTP API. The CLI talks to agents only through this. */

export type { FunctionSpec } from '../protocol/messages.js'
export type { AsyncRequest, Attempt, CallLogEntry, FunctionInfo, InvokeResponse, ManifestInfo, PeerInfo, ReadinessInfo, RuntimeInfo, StatusInfo } from '../protocol/api.js'

/** How a deploy asks a function to run (as `edge deploy` takes it). */
export interface DeploySettings {
  runtime?: RuntimeKind
  memory?: string
  timeout?: string
  env?: Record<string, string>
  container?: ContainerOptions
}

export interface InvokeRequest {
  input?: Uint8Array
  params?: Record<string, unknown>
  policy?: string
  peer?: string
  timeoutMs?: number
  explain?: boolean
}

/** An error answer from the agent, with the wire code and the function's stderr if any. */
export class ApiError extends UserError {
  readonly status: number
  readonly code: string
  readonly stderr: string | undefined
  readonly attempts: Attempt[] | undefined
  constructor (status: number, body: { code?: string, message?: string, stderr?: string, attempts?: Attempt[] }) {
    super(body.message ?? `agent answered HTTP ${status}`)
    this.status = status
    this.code = body.code ?? 'UNKNOWN'
    this.stderr = body.stderr
    this.attempts = body.attempts
  }
}

export class AgentClient {
  readonly url: string
  readonly #timeoutMs: number

  constructor (url: string, options: { timeoutMs?: number } = {}) {
    this.url = url.replace(/\/+$/, '')
    this.#timeoutMs = options.timeoutMs ?? 30_000
  }

  async #request<T> (method: string, path: string, body?: Uint8Array | string, timeoutMs = this.#timeoutMs, onProgress?: Progress, headers?: Record<string, string>): Promise<T> {
    let res: { status: number, text: string }
    try {
      res = await send(this.url + path, method, body, timeoutMs, onProgress, headers)
    } catch (err) {
      const e = err as NodeJS.ErrnoException
      if (e.name === 'TimeoutError') throw new UserError(`the agent at ${this.url} did not answer within ${timeoutMs} ms`)
      throw new UserError(`cannot reach an agent at ${this.url} (${e.code ?? e.message}): is it running? Start one with 'edge-agent start', or pick one with --agent URL or --node K`)
    }
    let json: unknown
    try {
      json = res.text === '' ? {} : JSON.parse(res.text)
    } catch {
      throw new UserError(`${this.url} answered with something that is not JSON: is it an edge agent?`)
    }
    if (res.status >= 400) throw new ApiError(res.status, (json as { error?: object }).error ?? {})
    return json as T
  }

  async status (): Promise<StatusInfo> {
    return await this.#request('GET', '/v1/status')
  }

  async peers (): Promise<PeerInfo[]> {
    return (await this.#request<{ peers: PeerInfo[] }>('GET', '/v1/peers')).peers
  }

  async list (): Promise<FunctionInfo[]> {
    return (await this.#request<{ functions: FunctionInfo[] }>('GET', '/v1/functions')).functions
  }

  async manifest (name: string): Promise<ManifestInfo> {
    return (await this.#request<{ manifest: ManifestInfo }>('GET', `/v1/functions/${encodeURIComponent(name)}/manifest`)).manifest
  }

  /**
   * Deploys code; the agent signs its manifest, unless `record` is a manifest the deployer signed
   * already (`edge deploy --key`), whose limits then count.
   */
  async deploy (name: string, code: Uint8Array, options: DeploySettings & { entry?: string, onProgress?: Progress, record?: Uint8Array } = {}): Promise<{ function: FunctionSpec, holder: string, shared: boolean }> {
    const q = new URLSearchParams()
    if (options.runtime !== undefined) q.set('runtime', options.runtime)
    if (options.memory !== undefined) q.set('memory', options.memory)
    if (options.timeout !== undefined) q.set('timeout', options.timeout)
    if (options.entry !== undefined) q.set('entry', options.entry)
    if (options.env !== undefined) q.set('env', JSON.stringify(options.env))
    if (options.container !== undefined) q.set('container', JSON.stringify(options.container))
    const qs = q.size > 0 ? `?${q.toString()}` : ''
    return await this.#request('PUT', `/v1/functions/${encodeURIComponent(name)}${qs}`, code, 120_000, options.onProgress, signed(options.record))
  }

  /** Starts containers of a container function until `count` are ready. */
  async prewarm (name: string, count: number): Promise<{ name: string, version: number, started: number, warm: number }> {
    return await this.#request('POST', `/v1/functions/${encodeURIComponent(name)}/prewarm`, JSON.stringify({ count }), 120_000)
  }

  /** Deletes every version; `record` is a tombstone the deployer signed (`edge delete --key`). */
  async delete (name: string, options: { record?: Uint8Array } = {}): Promise<{ name: string, version: number }> {
    return await this.#request('DELETE', `/v1/functions/${encodeURIComponent(name)}`, undefined, undefined, undefined, signed(options.record))
  }

  /** The highest version of `name` this agent knows, deleted ones included (0 if none). */
  async highestVersion (name: string): Promise<number> {
    return (await this.#request<{ highest: number }>('GET', `/v1/functions/${encodeURIComponent(name)}/version`)).highest
  }

  async invoke (name: string, request: InvokeRequest = {}): Promise<InvokeResponse & { outputBytes: Uint8Array }> {
    const timeout = (request.timeoutMs ?? 30_000) + 5_000
    const res = await this.#request<InvokeResponse>('POST', `/v1/functions/${encodeURIComponent(name)}/invoke`, invokeBody(request), timeout)
    return { ...res, outputBytes: Buffer.from(res.output, 'base64') }
  }

  /** Hands a call to the agent to run in the background: resolves once the agent has journaled it. */
  async invokeAsync (name: string, request: InvokeRequest = {}): Promise<AsyncRequest> {
    return (await this.#request<{ request: AsyncRequest }>('POST', `/v1/functions/${encodeURIComponent(name)}/invoke`, invokeBody(request, { async: true }))).request
  }

  /** An async call's state, with its result once done; waits up to `waitMs` (at most 60 s) for it to finish. */
  async poll (id: string, waitMs = 0): Promise<AsyncRequest> {
    const q = waitMs > 0 ? `?wait=${Math.round(waitMs)}` : ''
    return (await this.#request<{ request: AsyncRequest }>('GET', `/v1/requests/${encodeURIComponent(id)}${q}`, undefined, waitMs + 10_000)).request
  }

  /** Recent calls that ran on this agent, oldest first, with what each function printed on stderr. */
  async logs (options: { name?: string, limit?: number } = {}): Promise<CallLogEntry[]> {
    const q = new URLSearchParams()
    if (options.name !== undefined) q.set('function', options.name)
    if (options.limit !== undefined) q.set('limit', String(options.limit))
    return (await this.#request<{ entries: CallLogEntry[] }>('GET', `/v1/logs${q.size > 0 ? `?${q.toString()}` : ''}`)).entries
  }

  /**
   * Follows the calls that run on the agent (`edge logs -f`): the newest `limit` first, then each
   * as it ends, until `signal` aborts (resolves) or the agent goes (rejects).
   */
  async followLogs (options: { name?: string, limit?: number, signal?: AbortSignal }, onEntry: (entry: CallLogEntry & { dropped?: number }) => void): Promise<void> {
    const q = new URLSearchParams({ follow: '1' })
    if (options.name !== undefined) q.set('function', options.name)
    if (options.limit !== undefined) q.set('limit', String(options.limit))
    await new Promise<void>((resolve, reject) => {
      const req = request(`${this.url}/v1/logs?${q.toString()}`, {
        headers: { accept: 'text/event-stream', ...(process.env.EDGE_API_TOKEN !== undefined ? { authorization: `Bearer ${process.env.EDGE_API_TOKEN}` } : {}) },
        ...(options.signal !== undefined ? { signal: options.signal } : {})
      }, (res) => {
        if ((res.statusCode ?? 0) >= 400) {
          let text = ''
          res.on('data', (c: Buffer) => { text += c.toString('utf8') })
          res.on('end', () => {
            let error: object = {}
            try { error = (JSON.parse(text) as { error?: object }).error ?? {} } catch {}
            reject(new ApiError(res.statusCode ?? 0, error))
          })
          return
        }
        let buffered = ''
        res.setEncoding('utf8')
        res.on('data', (chunk: string) => {
          buffered += chunk
          let end: number
          while ((end = buffered.indexOf('\n\n')) >= 0) {
            const event = buffered.slice(0, end)
            buffered = buffered.slice(end + 2)
            const data = event.split('\n').filter(l => l.startsWith('data: ')).map(l => l.slice(6)).join('\n')
            if (data !== '') onEntry(JSON.parse(data) as CallLogEntry)
          }
        })
        res.on('end', () => { reject(new UserError(`the agent at ${this.url} closed the log stream: did it stop?`)) })
        res.on('error', (err) => { if (options.signal?.aborted === true) resolve(); else reject(err) })
      })
      req.on('error', (err: NodeJS.ErrnoException) => {
        if (options.signal?.aborted === true) resolve()
        else reject(new UserError(`cannot reach an agent at ${this.url} (${err.code ?? err.message}): is it running?`))
      })
      req.end()
    })
  }

  /** Async calls this agent knows, newest first. */
  async requests (): Promise<AsyncRequest[]> {
    return (await this.#request<{ requests: AsyncRequest[] }>('GET', '/v1/requests')).requests
  }
}

function invokeBody (request: InvokeRequest, extra: Record<string, unknown> = {}): string {
  const { input, ...rest } = request
  return JSON.stringify({ ...rest, ...extra, ...(input !== undefined ? { input: Buffer.from(input).toString('base64') } : {}) })
}
