/**
 * Runs WASI (preview1) modules inside a worker thread, one call at a time.
 * stdin/stdout/stderr are in-memory: fd 0 reads the request, fds 1 and 2 are captured. No fd of
 * the agent is reachable from a function: node:wasi's own fds 0–2 are /dev/null (a worker shares
 * its process's fds, and by default node:wasi would hand a function the agent's stdio), calls that
 * would close or move fds 0–2 are answered here, and there are no preopens. Time limits are
 * enforced from outside by terminating this worker.
 */
import { openSync, readlinkSync } from 'node:fs'
import { getPriority, setPriority } from 'node:os'
import { parentPort, workerData } from 'node:worker_threads'
import type { ToWorker, FromWorker, WorkerDone } from './messages.js'

// node:wasi warns that it is experimental on first use in every worker; the agent knows.
const emitWarning = process.emitWarning.bind(process)
process.emitWarning = ((warning: string | Error, ...rest: unknown[]) => {
  const text = typeof warning === 'string' ? warning : warning.message
  if (text.includes('WASI')) return
  ;(emitWarning as (...a: unknown[]) => void)(warning, ...rest)
}) as typeof process.emitWarning
const { WASI } = await import('node:wasi')

const ERRNO_SUCCESS = 0
const ERRNO_BADF = 8
const ERRNO_FBIG = 22
const ERRNO_NOTSUP = 58
const ERRNO_SPIPE = 70
const FILETYPE_REGULAR_FILE = 4
const ALL_RIGHTS = 0x1fffffffn

type WasiFn = (...args: number[]) => number

/** State of the call in progress; the import object below reads it. */
interface Call {
  real: Record<string, WasiFn>
  input: Uint8Array
  inOffset: number
  stdout: Uint8Array[]
  stderr: Uint8Array[]
  outBytes: number
  maxOutputBytes: number
  /** A write went past maxOutputBytes: the call fails, naming the limit, whatever the function does next. */
  overflowed: boolean
  /** Which of fds 0–2 the function has closed. */
  closed: Set<number>
  memory: WebAssembly.Memory
}
let call: Call | undefined

function current (): Call {
  if (call === undefined) throw new Error('no call in progress')
  return call
}

/** An fd that is one of the call's in-memory stdio (numbers come unsigned, see `forwarded`). */
function isStdio (fd: number): boolean {
  return fd <= 2
}

/** Answers for fds 0–2; each forwards any other fd to node:wasi, which knows none (no preopens). */
const stdio: Record<string, WasiFn> = {
  fd_read (fd, iovs, iovsLen, nread) {
    const c = current()
    if (fd !== 0) return isStdio(fd) ? ERRNO_BADF : c.real.fd_read!(fd, iovs, iovsLen, nread)
    if (c.closed.has(fd)) return ERRNO_BADF
    const view = new DataView(c.memory.buffer)
    const bytes = new Uint8Array(c.memory.buffer)
    let total = 0
    for (let i = 0; i < iovsLen && c.inOffset < c.input.length; i++) {
      const ptr = view.getUint32(iovs + i * 8, true)
      const len = view.getUint32(iovs + i * 8 + 4, true)
      const n = Math.min(len, c.input.length - c.inOffset)
      bytes.set(c.input.subarray(c.inOffset, c.inOffset + n), ptr)
      c.inOffset += n
      total += n
    }
    view.setUint32(nread, total, true)
    return ERRNO_SUCCESS
  },
  fd_write (fd, iovs, iovsLen, nwritten) {
    const c = current()
    if (fd !== 1 && fd !== 2) return isStdio(fd) ? ERRNO_BADF : c.real.fd_write!(fd, iovs, iovsLen, nwritten)
    if (c.closed.has(fd)) return ERRNO_BADF
    const view = new DataView(c.memory.buffer)
    let total = 0
    for (let i = 0; i < iovsLen; i++) {
      const ptr = view.getUint32(iovs + i * 8, true)
      const len = view.getUint32(iovs + i * 8 + 4, true)
      if (c.outBytes + len > c.maxOutputBytes) {
        c.overflowed = true
        return ERRNO_FBIG
      }
      ;(fd === 1 ? c.stdout : c.stderr).push(new Uint8Array(c.memory.buffer, ptr, len).slice())
      c.outBytes += len
      total += len
    }
    view.setUint32(nwritten, total, true)
    return ERRNO_SUCCESS
  },
  fd_fdstat_get (fd, buf) {
    const c = current()
    if (!isStdio(fd)) return c.real.fd_fdstat_get!(fd, buf)
    if (c.closed.has(fd)) return ERRNO_BADF
    const view = new DataView(c.memory.buffer)
    view.setUint8(buf, FILETYPE_REGULAR_FILE)
    view.setUint16(buf + 2, 0, true)
    view.setBigUint64(buf + 8, ALL_RIGHTS, true)
    view.setBigUint64(buf + 16, ALL_RIGHTS, true)
    return ERRNO_SUCCESS
  },
  // C programs that fclose(stdout) do this: the call's own stdout closes, never the agent's.
  fd_close (fd) {
    const c = current()
    if (!isStdio(fd)) return c.real.fd_close!(fd)
    if (c.closed.has(fd)) return ERRNO_BADF
    c.closed.add(fd)
    return ERRNO_SUCCESS
  },
  fd_renumber (from, to) {
    const c = current()
    if (isStdio(from) || isStdio(to)) return ERRNO_NOTSUP
    return c.real.fd_renumber!(from, to)
  },
  fd_seek (fd, offset, whence, newOffset) {
    return isStdio(fd) ? ERRNO_SPIPE : current().real.fd_seek!(fd, offset, whence, newOffset)
  },
  fd_tell (fd, offset) {
    return isStdio(fd) ? ERRNO_SPIPE : current().real.fd_tell!(fd, offset)
  },
  fd_pread (fd, iovs, iovsLen, offset, nread) {
    return isStdio(fd) ? ERRNO_SPIPE : current().real.fd_pread!(fd, iovs, iovsLen, offset, nread)
  },
  fd_pwrite (fd, iovs, iovsLen, offset, nwritten) {
    return isStdio(fd) ? ERRNO_SPIPE : current().real.fd_pwrite!(fd, iovs, iovsLen, offset, nwritten)
  },
  // fstat(1): a regular file of size 0, as fd_fdstat_get says.
  fd_filestat_get (fd, buf) {
    const c = current()
    if (!isStdio(fd)) return c.real.fd_filestat_get!(fd, buf)
    if (c.closed.has(fd)) return ERRNO_BADF
    new Uint8Array(c.memory.buffer, buf, 64).fill(0)
    new DataView(c.memory.buffer).setUint8(buf + 16, FILETYPE_REGULAR_FILE)
    return ERRNO_SUCCESS
  },
  // Flags (O_APPEND, O_NONBLOCK) and syncs mean nothing to in-memory stdio.
  fd_fdstat_set_flags (fd, flags) {
    return isStdio(fd) ? (current().closed.has(fd) ? ERRNO_BADF : ERRNO_SUCCESS) : current().real.fd_fdstat_set_flags!(fd, flags)
  },
  fd_sync (fd) {
    return isStdio(fd) ? ERRNO_SUCCESS : current().real.fd_sync!(fd)
  },
  fd_datasync (fd) {
    return isStdio(fd) ? ERRNO_SUCCESS : current().real.fd_datasync!(fd)
  }
}

/** fd-taking calls not answered above, which on fds 0–2 are refused: node:wasi's own (/dev/null) are never handed over. */
const FD_CALLS = ['fd_advise', 'fd_allocate', 'fd_fdstat_set_rights', 'fd_filestat_set_size', 'fd_filestat_set_times', 'fd_prestat_get', 'fd_prestat_dir_name', 'fd_readdir', 'sock_accept', 'sock_recv', 'sock_send', 'sock_shutdown']
for (const name of FD_CALLS) {
  stdio[name] ??= (fd, ...rest) => isStdio(fd) ? (name === 'fd_prestat_get' ? ERRNO_BADF : ERRNO_NOTSUP) : current().real[name]!(fd, ...rest)
}

/** node:wasi's fds 0–2, for what it does itself (poll_oneoff on stdin polls this /dev/null). Opened once, never closed. */
const devNull = { stdin: openSync('/dev/null', 'r'), stdout: openSync('/dev/null', 'w'), stderr: openSync('/dev/null', 'w') }

/**
 * One import object for the life of the worker. Everything but stdio forwards to the node:wasi
 * instance of the current call. Importing node:wasi's own functions directly makes each
 * instantiation ~4x slower (0.42 vs 0.12 ms measured), which is most of a warm call.
 */
const wasiNames = Object.keys(new WASI({ version: 'preview1', returnOnExit: true, ...devNull }).wasiImport)
const forwarded: Record<string, WasiFn> = {}
for (const name of wasiNames) {
  const own = stdio[name] ?? ((...args: number[]) => (call as Call).real[name]!(...args))
  // WASM hands i32 arguments to JS as signed numbers; WASI's are all unsigned (fds, pointers,
  // lengths, flags), and node:wasi answers EINVAL to a negative one. i64s arrive as BigInts.
  // Converted in place: this runs at every WASI call (each write of a chatty function).
  forwarded[name] = (...args: number[]) => {
    for (let i = 0; i < args.length; i++) if (typeof args[i] === 'number') args[i] = (args[i] as number) >>> 0
    return own(...args)
  }
}
const imports = { wasi_snapshot_preview1: forwarded }

interface Loaded {
  module: WebAssembly.Module
  minPages: number
  maxPages: number
  /** A zeroed memory of the initial size, kept from the previous call. */
  spare: WebAssembly.Memory | undefined
}

/** Memories up to this size are zeroed and reused; larger ones are cheaper to allocate afresh. */
const REUSE_MAX_BYTES = 4 * 1024 * 1024

const modules = new Map<string, Loaded>()
const port = parentPort
if (port == null) throw new Error('worker.js must run in a worker thread')

port.on('message', (msg: ToWorker) => {
  switch (msg.type) {
    case 'load':
      modules.set(msg.key, { module: msg.module, minPages: msg.memory.minPages, maxPages: msg.memory.maxPages, spare: undefined })
      break
    case 'unload':
      modules.delete(msg.key)
      break
    case 'run': {
      const loaded = modules.get(msg.key)
      const memory = loaded === undefined ? undefined : (loaded.spare ?? new WebAssembly.Memory({ initial: loaded.minPages, maximum: loaded.maxPages }))
      if (loaded !== undefined) loaded.spare = undefined
      const result = run(msg, loaded?.module, memory)
      port.postMessage(result, [result.stdout.buffer as ArrayBuffer])
      // Off the critical path: wipe the memory for the next call, unless it grew.
      if (loaded !== undefined && memory !== undefined && memory.buffer.byteLength === loaded.minPages * 65536 && memory.buffer.byteLength <= REUSE_MAX_BYTES) {
        new Uint8Array(memory.buffer).fill(0)
        loaded.spare = memory
      }
      break
    }
  }
})
/**
 * Functions yield the CPU to the agent: this thread runs `workerData.nice` nicer than the thread
 * that started it (see FUNCTION_NICE in pool.ts). Linux keeps a nice value per thread
 * (setpriority(2) on the thread's id, read from /proc/thread-self); elsewhere the worker runs at
 * the agent's priority.
 */
function yieldToAgent (nice: number): void {
  try {
    const tid = Number(readlinkSync('/proc/thread-self').split('/').pop())
    if (Number.isInteger(tid) && tid > 0 && nice > 0) setPriority(tid, Math.min(19, getPriority(tid) + nice))
  } catch {}
}
yieldToAgent(Number((workerData as { nice?: number } | null)?.nice ?? 0))
// Loaded and listening: the pool starts a call's time limit from here.
port.postMessage({ type: 'ready' } satisfies FromWorker)

/** Concatenates into an exact-size buffer of its own (transferable, unlike a slice of Buffer's pool). */
function join (parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.byteLength, 0))
  let offset = 0
  for (const p of parts) {
    out.set(p, offset)
    offset += p.byteLength
  }
  return out
}

function run (msg: Extract<ToWorker, { type: 'run' }>, module: WebAssembly.Module | undefined, memory: WebAssembly.Memory | undefined): WorkerDone {
  if (module === undefined || memory === undefined) return { type: 'done', id: msg.id, ok: false, error: 'module not loaded in worker', stdout: new Uint8Array(0), stderr: '' }
  const wasi = new WASI({ version: 'preview1', args: [msg.name], env: msg.env, returnOnExit: true, ...devNull })
  const c: Call = {
    real: wasi.wasiImport as Record<string, WasiFn>,
    input: msg.input,
    inOffset: 0,
    stdout: [],
    stderr: [],
    outBytes: 0,
    maxOutputBytes: msg.maxOutputBytes,
    overflowed: false,
    closed: new Set(),
    memory
  }
  call = c
  try {
    const instance = new WebAssembly.Instance(module, { ...imports, env: { memory } })
    const exitCode = wasi.start(instance)
    if (c.overflowed) return { type: 'done', id: msg.id, ok: false, error: `its output went past the limit of ${c.maxOutputBytes} bytes (stdout and stderr together; the first ${c.outBytes} are kept)`, stdout: join(c.stdout), stderr: Buffer.concat(c.stderr).toString('utf8') }
    return { type: 'done', id: msg.id, ok: true, exitCode, stdout: join(c.stdout), stderr: Buffer.concat(c.stderr).toString('utf8') }
  } catch (err) {
    const e = err as Error
    const error = e instanceof WebAssembly.RuntimeError ? `trap: ${e.message}` : `${e.name}: ${e.message}`
    return { type: 'done', id: msg.id, ok: false, error, stdout: join(c.stdout), stderr: Buffer.concat(c.stderr).toString('utf8') }
  } finally {
    call = undefined
  }
}
