import { test, beforeEach, afterEach } from 'node:test'
import assert from 'node:assert/strict'
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { randomUUID } from 'node:crypto'
import { AsyncCalls, type AsyncCallsInit } from '../../agent/calls/async-calls.js'
import { Journal, JOURNAL_VERSION, type RequestRecord } from '../../agent/calls/journal.js'
import { OverloadedError } from '../../agent/errors.js'
import { FunctionError } from '../../protocol/index.js'
import { eventually, text } from '../helpers.js'

let dir: string
let calls: AsyncCalls | undefined

beforeEach(() => { dir = mkdtempSync(join(tmpdir(), 'edge-async-')) })
afterEach(async () => {
  // Calls still finishing write to the journal: let them, before the directory goes.
  await calls?.stop(2000)
  calls = undefined
  rmSync(dir, { recursive: true, force: true })
})

type Run = AsyncCallsInit['run']
const echo: Run = async (target, input) => ({ target, output: Buffer.from(input).toString('base64') })

function start (run: Run, extra: Partial<AsyncCallsInit> = {}): AsyncCalls {
  calls = new AsyncCalls({ journal: new Journal(dir), run, concurrency: 2, maxPending: 100, resultsTtlMs: 60_000, maxWaitMs: 60_000, ...extra })
  return calls
}

function onDisk (id: string): RequestRecord {
  return JSON.parse(readFileSync(join(dir, 'requests', `${id}.json`), 'utf8')) as RequestRecord
}

/** A run that holds each call until released. */
function gate (): { run: Run, started: string[], release: () => void } {
  const started: string[] = []
  let open!: () => void
  const opened = new Promise<void>(resolve => { open = resolve })
  return {
    started,
    release: () => { open() },
    run: async (target, input) => {
      started.push(text(input))
      await opened
      return await echo(target, input, {}, new AbortController().signal)
    }
  }
}

test('a call is on disk, with its input, before it is acknowledged; its result replaces the input', async () => {
  const g = gate()
  const c = start(g.run)
  await c.start()
  const accepted = await c.submit('fn@1', Buffer.from('hello'), { policy: 'near' })
  const stored = onDisk(accepted.id)
  assert.equal(stored.target, 'fn@1')
  assert.equal(Buffer.from(stored.input ?? '', 'base64').toString(), 'hello')
  assert.deepEqual(stored.options, { policy: 'near' })
  await eventually(() => g.started.length === 1, 2000, 'the call to start')
  assert.equal(onDisk(accepted.id).state, 'running', 'marked running before it runs')
  g.release()
  const done = await c.get(accepted.id, 2000)
  assert.equal(done?.state, 'done')
  assert.equal(Buffer.from(String(done?.result?.output), 'base64').toString(), 'hello')
  assert.equal(onDisk(accepted.id).input, undefined)
  assert.equal(c.counts().done, 1)
})

test('at most `concurrency` calls run at once; the rest wait in the queue', async () => {
  const g = gate()
  const c = start(g.run, { concurrency: 2 })
  await c.start()
  const ids = []
  for (const n of ['1', '2', '3', '4']) ids.push((await c.submit('fn@1', Buffer.from(n), {})).id)
  await eventually(() => g.started.length === 2, 2000, 'two calls to start')
  assert.deepEqual(g.started.sort(), ['1', '2'], 'the first two taken')
  assert.equal(c.counts().queued, 2)
  g.release()
  for (const id of ids) assert.equal((await c.get(id, 2000))?.state, 'done')
  assert.deepEqual(g.started.sort(), ['1', '2', '3', '4'])
})

test('after a crash, queued calls run and a call that was running is failed as interrupted, not run again', async () => {
  const journal = new Journal(dir)
  const record = (state: 'queued' | 'running' | 'done', input: string, extra: Partial<RequestRecord> = {}): RequestRecord => ({
    v: JOURNAL_VERSION, id: randomUUID(), target: 'fn@1', state, options: {}, submittedAt: Date.now(), dispatches: state === 'queued' ? 0 : 1, input: Buffer.from(input).toString('base64'), ...extra
  })
  const queued = record('queued', 'q')
  const running = record('running', 'r', { startedAt: Date.now() })
  const { input: _i, ...doneFields } = record('done', 'd')
  const old: RequestRecord = { ...doneFields, finishedAt: Date.now() - 120_000, result: { output: '' } }
  for (const r of [queued, running, old]) await journal.write(r)
  // A write cut off by the crash, and a record that is not one.
  writeFileSync(join(dir, 'requests', `${randomUUID()}.json.123.tmp`), '{"v":1,')
  const junk = randomUUID()
  writeFileSync(join(dir, 'requests', `${junk}.json`), 'not json')

  const ran: string[] = []
  const c = start(async (target, input) => { ran.push(text(input)); return await echo(target, input, {}, new AbortController().signal) })
  await c.start()
  assert.equal((await c.get(queued.id, 2000))?.state, 'done')
  const interrupted = await c.get(running.id)
  assert.equal(interrupted?.state, 'failed')
  assert.equal(interrupted?.error?.code, 'INTERRUPTED')
  assert.match(interrupted?.error?.message ?? '', /stopped while this call was running/)
  assert.deepEqual(ran, ['q'])
  assert.equal(await c.get(old.id), undefined, 'a result past its TTL is gone')
  assert.ok(!existsSync(join(dir, 'requests', `${old.id}.json`)))
  const files = readdirSync(join(dir, 'requests'))
  assert.ok(files.includes(`${junk}.json.bad`), 'the bad record is set aside, not lost')
  assert.ok(!files.some(f => f.endsWith('.tmp')))
})

test('a call that finds every place busy waits and is tried again; past its wait it fails as overloaded', async () => {
  let busyFor = 2
  const c = start(async (target, input) => {
    if (busyFor-- > 0) throw new OverloadedError('every place that could run \'fn\' is busy')
    return await echo(target, input, {}, new AbortController().signal)
  })
  await c.start()
  const { id } = await c.submit('fn@1', Buffer.from('x'), {})
  await eventually(() => c.list().find(r => r.id === id)?.waiting !== undefined, 2000, 'the call to wait')
  const done = await c.get(id, 5000)
  assert.equal(done?.state, 'done')
  assert.equal(done?.dispatches, 3)
  assert.equal(done?.waiting, undefined)
  await c.stop(0)

  const never = start(async () => { throw new OverloadedError('every place that could run \'fn\' is busy') }, { maxWaitMs: 300 })
  await never.start()
  const late = await never.submit('fn@1', Buffer.from('x'), {})
  const failed = await never.get(late.id, 5000)
  assert.equal(failed?.state, 'failed')
  assert.equal(failed?.error?.code, 'OVERLOADED')
  assert.match(failed?.error?.message ?? '', /waited \d+ s for a free place/)
})

test('a function\'s failure is the call\'s result, with its stderr; it is not tried again', async () => {
  let runs = 0
  const c = start(async () => { runs++; throw new FunctionError('function fn exited with code 3', { stderr: 'boom\n' }) })
  await c.start()
  const { id } = await c.submit('fn@1', new Uint8Array(), {})
  const r = await c.get(id, 2000)
  assert.equal(r?.state, 'failed')
  assert.deepEqual(r?.error, { name: 'FunctionError', code: 'FUNCTION_ERROR', message: 'function fn exited with code 3', stderr: 'boom\n' })
  assert.equal(runs, 1)
})

test('beyond maxPending unfinished calls, new ones are refused; unknown ids are undefined', async () => {
  const g = gate()
  const c = start(g.run, { concurrency: 1, maxPending: 2 })
  await c.start()
  const a = await c.submit('fn@1', Buffer.from('1'), {})
  const b = await c.submit('fn@1', Buffer.from('2'), {})
  await assert.rejects(c.submit('fn@1', Buffer.from('3'), {}), { name: 'BusyError', message: /2 async calls are waiting or running/ })
  assert.equal(await c.get(randomUUID()), undefined)
  assert.equal(await c.get('../../etc/passwd'), undefined)
  g.release()
  for (const { id } of [a, b]) assert.equal((await c.get(id, 2000))?.state, 'done')
})
