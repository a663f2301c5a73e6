import { mkdirSync, readdirSync, readFileSync, renameSync, rmSync } from 'node:fs'
import { open, rename, rm } from 'node:fs/promises'
import { join } from 'node:path'
import { logger } from '../log.js'

const log = logger('edge:agent:journal')

export const JOURNAL_VERSION = 1

export type RequestState = 'queued' | 'running' | 'done' | 'failed'
const STATES: readonly RequestState[] = ['queued', 'running', 'done', 'failed']

/** How an async call is to be run, as the caller asked. */
export interface CallOptions {
  policy?: string
  peer?: string
  /** Deadline of one run, all its attempts included (as for a call that waits). */
  timeoutMs?: number
}

export interface RequestError {
  name: string
  code: string
  message: string
  stderr?: string
}

/** One async call, as the journal keeps it. Outputs and inputs are base64. */
export interface RequestRecord {
  v: number
  id: string
  /** NAME@VERSION: the version is fixed when the call is accepted. */
  target: string
  state: RequestState
  options: CallOptions
  submittedAt: number
  startedAt?: number
  finishedAt?: number
  /** Times it was sent to be run (a call every place refused as busy goes back to the queue). */
  dispatches: number
  /** Why a queued call that was sent came back to the queue (every place busy). */
  waiting?: string
  /** Kept until the call has run. */
  input?: string
  /** What a call that waits would have answered, once done. */
  result?: Record<string, unknown>
  error?: RequestError
}

const ID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/

export function isRequestId (id: string): boolean {
  return ID.test(id)
}

/** Checks a record read back from disk: what a crash or a hand may have left there is not trusted. */
export function validateRecord (value: unknown): RequestRecord {
  const r = value as Partial<RequestRecord> | null
  const bad = (what: string): never => { throw new Error(`bad journal record: ${what}`) }
  if (r === null || typeof r !== 'object') return bad('not an object')
  if (r.v !== JOURNAL_VERSION) return bad(`version ${String(r.v)}`)
  if (typeof r.id !== 'string' || !isRequestId(r.id)) return bad('id')
  if (typeof r.target !== 'string' || r.target === '') return bad('target')
  if (!STATES.includes(r.state as RequestState)) return bad('state')
  if (r.options === null || typeof r.options !== 'object') return bad('options')
  if (typeof r.submittedAt !== 'number' || typeof r.dispatches !== 'number') return bad('times')
  if (r.input !== undefined && typeof r.input !== 'string') return bad('input')
  if ((r.state === 'queued' || r.state === 'running') && r.input === undefined) return bad('no input for a call still to run')
  return r as RequestRecord
}

/**
 * The durable half of async invocation: one file per request in `<dataDir>/requests`, replaced
 * atomically (write a temporary file, fsync it, rename it over the old one, fsync the directory),
 * so that after a crash each request is in the last state written, never half of one. A request
 * is written before it is acknowledged, and marked running before it runs.
 */
export class Journal {
  readonly dir: string

  constructor (dataDir: string) {
    this.dir = join(dataDir, 'requests')
    mkdirSync(this.dir, { recursive: true })
  }

  /**
   * Every request on disk. Temporary files of an interrupted write are removed (the previous state
   * stands); a record that does not parse is set aside as `<id>.json.bad`, not lost or fatal.
   */
  load (): RequestRecord[] {
    const records: RequestRecord[] = []
    for (const file of readdirSync(this.dir)) {
      const path = join(this.dir, file)
      if (file.endsWith('.tmp')) {
        rmSync(path, { force: true })
        continue
      }
      if (!file.endsWith('.json')) continue
      try {
        const record = validateRecord(JSON.parse(readFileSync(path, 'utf8')))
        if (`${record.id}.json` !== file) throw new Error(`record ${record.id} in ${file}`)
        records.push(record)
      } catch (err) {
        log.error('%s: %s; set aside as %s.bad', file, (err as Error).message, file)
        renameSync(path, `${path}.bad`)
      }
    }
    return records.sort((a, b) => a.submittedAt - b.submittedAt)
  }

  async read (id: string): Promise<RequestRecord | undefined> {
    if (!isRequestId(id)) return undefined
    const fh = await open(join(this.dir, `${id}.json`), 'r').catch(() => undefined)
    if (fh === undefined) return undefined
    try {
      return validateRecord(JSON.parse(await fh.readFile('utf8')))
    } finally {
      await fh.close()
    }
  }

  async write (record: RequestRecord): Promise<void> {
    const path = join(this.dir, `${record.id}.json`)
    const tmp = `${path}.${process.pid}.tmp`
    const fh = await open(tmp, 'w')
    try {
      await fh.writeFile(JSON.stringify(record))
      await fh.datasync()
    } finally {
      await fh.close()
    }
    await rename(tmp, path)
    await this.#syncDir()
  }

  async remove (id: string): Promise<void> {
    await rm(join(this.dir, `${id}.json`), { force: true })
  }

  /** Makes a rename durable: the directory entry, not only the file, must reach the disk. */
  async #syncDir (): Promise<void> {
    const dh = await open(this.dir, 'r')
    try {
      await dh.sync()
    } catch {
      // Some file systems cannot fsync a directory; the rename is then as durable as they make it.
    } finally {
      await dh.close()
    }
  }
}
