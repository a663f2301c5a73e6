import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { WasmRuntime, limitMemory } from '../../runtimes/index.js'
import { FUNCTION_NICE } from '../../runtimes/wasm/pool.js'
import { fstatSync, readdirSync, readFileSync } from 'node:fs'
import { getPriority } from 'node:os'
import { CancelledError, InterruptedError, MAX_IO_BYTES } from '../../protocol/index.js'
import { CLOSES_STDIO_WAT, eventually, example, fixture, specFor, text, WASI_IMPORTS, wat } from '../helpers.js'

const MiB = 1024 * 1024
let rt: WasmRuntime

before(async () => {
  rt = new WasmRuntime({ slots: 2, maxQueue: 4 })
  await rt.start()
})
after(async () => { await rt.stop() })

async function prepared (name: string, code: Uint8Array, extra = {}): Promise<ReturnType<typeof specFor>> {
  const spec = specFor(name, code, extra)
  await rt.prepare(spec, code)
  return spec
}

test('runs a WASI module with the input on stdin and returns stdout', async () => {
  const spec = await prepared('echo', example('echo'))
  const r = await rt.invoke(spec, Buffer.from('{"hello":"edge"}'))
  assert.equal(text(r.output), '{"hello":"edge"}')
  const again = await rt.invoke(spec, Buffer.from('x'))
  assert.equal(again.warm, true)
})

test('runs a CPU-bound function', async () => {
  const spec = await prepared('primes', example('primes'))
  assert.equal(text((await rt.invoke(spec, Buffer.from('{"n": 10000}'))).output), '{"n":10000,"primes":1229}\n')
})

test('a call past its time limit is stopped, and the runtime carries on', async () => {
  const spin = await prepared('spin', fixture('spin'), { timeoutMs: 300 })
  const started = Date.now()
  await assert.rejects(rt.invoke(spin, new Uint8Array(0)), { name: 'FunctionError', message: /timed out after 300 ms/ })
  assert.ok(Date.now() - started < 5000)
  const echo = await prepared('echo', example('echo'))
  // Both slots must still work: run more calls than slots.
  const results = await Promise.all([1, 2, 3, 4].map(async (i) => text((await rt.invoke(echo, Buffer.from(String(i)))).output)))
  assert.deepEqual(results, ['1', '2', '3', '4'])
  assert.equal(rt.capacity().busy, 0)
})

test('a trap is a FunctionError carrying the function\'s stderr', async () => {
  const spec = await prepared('trap', fixture('trap'))
  await assert.rejects(rt.invoke(spec, new Uint8Array(0)), (err: Error & { stderr: string }) => {
    assert.equal(err.name, 'FunctionError')
    assert.match(err.message, /trap: unreachable/)
    assert.equal(err.stderr, 'about to trap\n')
    return true
  })
})

test('a non-zero exit is a FunctionError with the exit code and stderr', async () => {
  const spec = await prepared('fail', fixture('fail'))
  await assert.rejects(rt.invoke(spec, new Uint8Array(0)), (err: Error & { stderr: string, exitCode: number }) => {
    assert.match(err.message, /exited with code 3/)
    assert.equal(err.exitCode, 3)
    assert.equal(err.stderr, 'bad input: nothing to do\n')
    return true
  })
})

test('a module without a declared maximum is capped at the memory limit', async () => {
  const small = await prepared('hog', fixture('hog'), { memoryBytes: 16 * MiB })
  const got = Number(text((await rt.invoke(small, new Uint8Array(0))).output))
  assert.ok(got > 0 && got < 16, `allocated ${got} MiB under a 16 MiB limit`)
  const large = await prepared('hog', fixture('hog'), { memoryBytes: 48 * MiB })
  const more = Number(text((await rt.invoke(large, new Uint8Array(0))).output))
  assert.ok(more > 16 && more < 48, `allocated ${more} MiB under a 48 MiB limit`)
})

test('a declared maximum above the limit is refused at prepare', async () => {
  const code = fixture('bigmax')
  await assert.rejects(rt.prepare(specFor('bigmax', code, { memoryBytes: 64 * MiB }), code), {
    name: 'InvalidModuleError', message: /declares up to 1024 MiB of memory, above the limit of 64 MiB/
  })
  await rt.prepare(specFor('bigmax', code, { memoryBytes: 1024 * MiB }), code)
})

test('malformed and non-WASI modules are refused with a clear message', async () => {
  const junk = Buffer.from('definitely not wasm')
  await assert.rejects(rt.prepare(specFor('junk', junk), junk), { name: 'InvalidModuleError', message: /not a WebAssembly module/ })
  const truncated = example('echo').subarray(0, 100)
  await assert.rejects(rt.prepare(specFor('cut', truncated), truncated), { name: 'InvalidModuleError' })
  // (module (import "env" "f" (func)) (memory (export "memory") 1) (func (export "_start")))
  const foreign = Uint8Array.from([0, 97, 115, 109, 1, 0, 0, 0, 1, 4, 1, 96, 0, 0, 2, 9, 1, 3, 101, 110, 118, 1, 102, 0, 0, 3, 2, 1, 0, 5, 3, 1, 0, 1, 7, 19, 2, 6, 109, 101, 109, 111, 114, 121, 2, 0, 6, 95, 115, 116, 97, 114, 116, 0, 1, 10, 4, 1, 2, 0, 11])
  await assert.rejects(rt.prepare(specFor('foreign', foreign), foreign), { name: 'InvalidModuleError', message: /imports env\.f/ })
})

test('when every slot is busy, a call that may not queue gets BusyError at once', async () => {
  const sleep = await prepared('sleep', fixture('sleep'))
  const running = [rt.invoke(sleep, Buffer.from('400')), rt.invoke(sleep, Buffer.from('400'))]
  await new Promise(resolve => setTimeout(resolve, 50))
  assert.equal(rt.capacity().busy, 2)
  await assert.rejects(rt.invoke(sleep, Buffer.from('1'), { queue: false }), { name: 'BusyError' })
  const queued = rt.invoke(sleep, Buffer.from('1'))
  assert.equal(rt.capacity().queued, 1)
  await Promise.all([...running, queued])
})

test('a queued call gives up when its deadline passes', async () => {
  const sleep = await prepared('sleep', fixture('sleep'))
  const running = [rt.invoke(sleep, Buffer.from('300')), rt.invoke(sleep, Buffer.from('300'))]
  await assert.rejects(rt.invoke(sleep, Buffer.from('1'), { signal: AbortSignal.timeout(50) }), { name: 'DeadlineExceededError' })
  await Promise.all(running)
  assert.equal(rt.capacity().queued, 0)
})

test('a call whose caller gives up stops, queued or running, with the caller\'s reason, and frees its slot', async () => {
  const sleep = await prepared('sleep', fixture('sleep'))
  const running = new AbortController()
  const waiting = new AbortController()
  const calls = [rt.invoke(sleep, Buffer.from('10000'), { signal: running.signal }), rt.invoke(sleep, Buffer.from('300'))]
  const queued = rt.invoke(sleep, Buffer.from('10000'), { signal: waiting.signal })
  await eventually(() => rt.capacity().busy === 2 && rt.capacity().queued === 1, 5000, 'two running, one queued')
  waiting.abort(new CancelledError('the client left'))
  await assert.rejects(queued, { name: 'CancelledError', message: 'the client left' })
  assert.equal(rt.capacity().queued, 0)
  running.abort(new InterruptedError('the agent is stopping'))
  await assert.rejects(calls[0] as Promise<unknown>, { name: 'InterruptedError' })
  await calls[1]
  // Both slots are free again: the stopped call's worker was replaced, and a new call runs at once.
  assert.equal(rt.capacity().busy, 0)
  assert.equal(text((await rt.invoke(sleep, Buffer.from('1'), { queue: false })).output), 'slept 1\n')
})

test('onStart is called when a call leaves the queue for a slot', async () => {
  const sleep = await prepared('sleep', fixture('sleep'))
  const started: string[] = []
  const a = rt.invoke(sleep, Buffer.from('150'), { onStart: () => { started.push('a') } })
  const b = rt.invoke(sleep, Buffer.from('150'), { onStart: () => { started.push('b') } })
  const c = rt.invoke(sleep, Buffer.from('1'), { onStart: () => { started.push('c') } })
  await eventually(() => started.length === 2, 5000, 'two calls started')
  assert.deepEqual(started.sort(), ['a', 'b'])
  await Promise.all([a, b, c])
  assert.deepEqual(started.sort(), ['a', 'b', 'c'])
})

test('limitMemory moves the memory to an import bounded by the limit', () => {
  const limited = limitMemory(example('echo'), 8 * MiB)
  assert.equal(limited.capped, true)
  assert.equal(limited.memory.maxPages, 128)
  const module = new WebAssembly.Module(limited.code as Uint8Array<ArrayBuffer>)
  assert.deepEqual(WebAssembly.Module.imports(module).filter(i => i.kind === 'memory'), [{ module: 'env', name: 'memory', kind: 'memory' }])
  assert.ok(WebAssembly.Module.exports(module).some(e => e.name === 'memory' && e.kind === 'memory'), 'still exports its memory for WASI')
  const bounded = limitMemory(fixture('bigmax'), 1024 * MiB)
  assert.equal(bounded.capped, false)
  assert.equal(bounded.memory.maxPages, 16384)
  assert.throws(() => limitMemory(Buffer.from('nope nope'), MiB), { name: 'InvalidModuleError', message: /bad magic/ })
  assert.throws(() => limitMemory(limited.code, MiB), { name: 'InvalidModuleError', message: /defines no memory/ })
})

test('every call starts with zeroed memory, though workers reuse memories', async () => {
  const spec = await prepared('dirty', fixture('dirty'))
  for (let i = 0; i < 6; i++) assert.equal(text((await rt.invoke(spec, new Uint8Array(0))).output), 'clean\n')
})

test('workers start as calls need them and end when idle, one stays ready', async () => {
  const lazy = new WasmRuntime({ slots: 3, workerIdleMs: 100 })
  await lazy.start()
  try {
    assert.equal(lazy.workers(), 1, 'one worker ready at start')
    const sleep = specFor('sleep', fixture('sleep'))
    await lazy.prepare(sleep, fixture('sleep'))
    const r = await Promise.all([1, 2, 3].map(async () => await lazy.invoke(sleep, Buffer.from('100'))))
    assert.equal(lazy.workers(), 3)
    assert.ok(r.every(x => !x.warm), 'each worker loads the module on its first call')
    await eventually(() => lazy.workers() === 1, 5000, 'idle workers to end')
    // The one left is the most recently used; a call finds it warm.
    const again = await lazy.invoke(sleep, Buffer.from('1'))
    assert.equal(again.warm, true)
    assert.equal(lazy.workers(), 1)
  } finally {
    await lazy.stop()
  }
})

/** A started runtime of two slots with echo prepared under this time limit: a second call at once gets a slot whose worker starts for it. */
async function twoSlotsWithEcho (timeoutMs: number): Promise<{ pool: WasmRuntime, echo: ReturnType<typeof specFor> }> {
  const pool = new WasmRuntime({ slots: 2 })
  await pool.start()
  const echo = specFor('echo', example('echo'), { timeoutMs })
  await pool.prepare(echo, example('echo'))
  return { pool, echo }
}

test("a call's time limit starts once its worker has loaded, not while it starts", async () => {
  // Shorter than a worker takes to start (~40 ms), longer than echo takes to run (~2 ms).
  const { pool, echo } = await twoSlotsWithEcho(25)
  try {
    const r = await Promise.all(['one', 'two'].map(async (x) => await pool.invoke(echo, Buffer.from(x))))
    assert.deepEqual(r.map(x => text(x.output)), ['one', 'two'])
    assert.equal(pool.workers(), 2)
  } finally {
    await pool.stop()
  }
})

test('a call waiting for its worker to start fails at once when the runtime stops', async () => {
  const { pool, echo } = await twoSlotsWithEcho(2000)
  // The second call gets the slot whose worker starts for it; the runtime stops meanwhile.
  const calls = Promise.allSettled(['one', 'two'].map(async (x) => await pool.invoke(echo, Buffer.from(x))))
  await pool.stop()
  const settled = await calls
  for (const s of settled) {
    if (s.status === 'rejected') assert.match((s.reason as Error).message, /stopped/, 'failed by the stop, not by its time limit')
  }
  assert.equal(settled[1]?.status, 'rejected')
  assert.equal(pool.workers(), 0)
})


test('a function that closes its stdio closes its own, never the agent\'s: later writes fail in it, and the next call writes as usual', async () => {
  const before = fstatSync(1)
  const closer = await prepared('closer', await wat(CLOSES_STDIO_WAT))
  for (let i = 0; i < 2; i++) {
    await assert.rejects(rt.invoke(closer, new Uint8Array(0)), { name: 'FunctionError', message: /exited with code 8\b/ }, 'EBADF: its own stdout is closed')
  }
  const after = fstatSync(1)
  assert.deepEqual([after.dev, after.ino, after.mode], [before.dev, before.ino, before.mode], 'this process\'s fd 1 is the same open file')
  const echo = await prepared('echo', example('echo'))
  const outputs = await Promise.all([1, 2, 3].map(async (i) => text((await rt.invoke(echo, Buffer.from(`call ${i}`))).output)))
  assert.deepEqual(outputs, ['call 1', 'call 2', 'call 3'])
})

test('WASI arguments are taken as unsigned: a write to fd 2^32-1 is EBADF, not EINVAL', async () => {
  const spec = await prepared('badfd', await wat(`(module ${WASI_IMPORTS}
    (memory (export "memory") 1)
    (func (export "_start")
      (call $exit (call $write (i32.const -1) (i32.const 0) (i32.const 0) (i32.const 8)))))`))
  await assert.rejects(rt.invoke(spec, new Uint8Array(0)), { name: 'FunctionError', message: /exited with code 8\b/ })
})

test('output past the limit fails the call, naming the limit, though the function exits 0', async () => {
  // 100 writes of 64 KiB: 6.25 MiB, past the 6 MiB a call may return.
  const spec = await prepared('flood', await wat(`(module ${WASI_IMPORTS}
    (memory (export "memory") 2)
    (func (export "_start") (local $i i32)
      (i32.store (i32.const 0) (i32.const 1024))
      (i32.store (i32.const 4) (i32.const 65536))
      (loop $more
        (drop (call $write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br_if $more (i32.lt_u (local.get $i) (i32.const 100))))))`))
  await assert.rejects(rt.invoke(spec, new Uint8Array(0)), { name: 'FunctionError', message: new RegExp(`output went past the limit of ${MAX_IO_BYTES} bytes`) })
})

/** Nice values of this process's threads (Linux: field 19 of /proc/self/task/TID/stat). */
function threadNices (): number[] {
  return readdirSync('/proc/self/task').map((tid) => {
    const stat = readFileSync(`/proc/self/task/${tid}/stat`, 'utf8')
    return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[16])
  })
}

test('function workers run FUNCTION_NICE nicer than the agent, whose own thread keeps its priority', { skip: process.platform !== 'linux' && 'thread priorities are read from Linux\'s /proc' }, async () => {
  const own = getPriority()
  const nicer = (): number => threadNices().filter(n => n === Math.min(19, own + FUNCTION_NICE)).length
  await rt.invoke(await prepared('echo', example('echo')), Buffer.from('x')) // the shared runtime's workers have started
  const before = nicer()
  const mine = new WasmRuntime({ slots: 2, maxQueue: 4 })
  try {
    await mine.start()
    await eventually(() => nicer() === before + 1, 5000, 'the first worker is nicer')
    const spec = specFor('sleep', fixture('sleep'))
    await mine.prepare(spec, fixture('sleep'))
    await Promise.all([mine.invoke(spec, Buffer.from('50')), mine.invoke(spec, Buffer.from('50'))])
    assert.equal(nicer(), before + 2, 'the second worker too')
    assert.equal(getPriority(), own, 'the agent\'s thread is unchanged')
  } finally {
    await mine.stop()
  }
  await eventually(() => nicer() === before, 5000, 'the workers are gone')
})
