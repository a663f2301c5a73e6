import { createHash } from 'node:crypto'
import { existsSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import type { FunctionSpec } from '../protocol/index.js'
import type { EdgeNode } from '../agent/swarm/node.js'
import type { Testnet } from '../testnet/index.js'
import type { PrivateKey } from '@libp2p/interface'

/** Paths resolve from dist/test/ back to the sources' folders. */
export const ROOT = fileURLToPath(new URL('../../', import.meta.url))
export const EDGE_BIN = fileURLToPath(new URL('../cli/edge.js', import.meta.url))

export function fixture (name: string): Uint8Array {
  return readFileSync(`${ROOT}test/fixtures/${name}.wasm`)
}

export function example (name: string): Uint8Array {
  return readFileSync(`${ROOT}examples/${name}/${name}.wasm`)
}

export function specFor (name: string, code: Uint8Array, extra: Partial<FunctionSpec> = {}): FunctionSpec {
  return {
    name,
    version: 1,
    runtime: 'wasm',
    sha256: createHash('sha256').update(code).digest('hex'),
    size: code.byteLength,
    memoryBytes: 64 * 1024 * 1024,
    timeoutMs: 2000,
    deployedAt: Date.now(),
    ...extra
  }
}

export function text (bytes: Uint8Array): string {
  return Buffer.from(bytes).toString('utf8')
}

/** Polls `check` until it returns a value other than undefined/false, or fails after `timeoutMs`. */
export async function eventually<T> (check: () => Promise<T | undefined | false> | T | undefined | false, timeoutMs = 15_000, what = 'condition'): Promise<T> {
  const until = Date.now() + timeoutMs
  let last: unknown
  while (Date.now() < until) {
    try {
      const v = await check()
      if (v !== undefined && v !== false) return v
    } catch (err) {
      last = err
    }
    await new Promise(resolve => setTimeout(resolve, 100))
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last !== undefined ? `: ${(last as Error).message}` : ''}`)
}

export interface Run { code: number | null, stdout: string, stderr: string }

export interface StartedAgent { pid: number, dataDir: string, info: { api: string, peerId: string, addrs: string[] } }

/**
 * Starts `edge-agent start` on `<root>/<name>` (loopback, any free ports, no mDNS), its log in
 * `<root>/<name>.log`; resolves once its agent.json names it. The caller stops it (stopAgent).
 */
export async function startAgentIn (root: string, name: string, args: string[] = [], env: NodeJS.ProcessEnv = {}, started: Array<{ pid: number, dataDir: string }> = []): Promise<StartedAgent> {
  const { spawnAgent } = await import('../testnet/process.js')
  const dataDir = join(root, name)
  const pid = spawnAgent(['--data-dir', dataDir, '--listen', '/ip4/127.0.0.1/tcp/0', '--api-port', '0', '--no-mdns', ...args], join(root, `${name}.log`), env)
  started.push({ pid, dataDir })
  const info = await eventually(() => {
    try {
      const i = JSON.parse(readFileSync(join(dataDir, 'agent.json'), 'utf8')) as StartedAgent['info'] & { pid: number }
      return i.pid === pid ? i : undefined
    } catch { return undefined }
  }, 20_000, `${name} to start`)
  return { pid, dataDir, info }
}

/** Runs a Node script of this project to completion, capturing its output. */
export async function runNode (script: string, args: string[], options: { env?: NodeJS.ProcessEnv, input?: string, cwd?: string } = {}): Promise<Run> {
  const { spawn } = await import('node:child_process')
  return await new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [script, ...args], { env: { ...process.env, ...options.env }, cwd: options.cwd ?? ROOT, stdio: ['pipe', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (d: Buffer) => { stdout += d.toString() })
    child.stderr.on('data', (d: Buffer) => { stderr += d.toString() })
    child.on('error', reject)
    child.on('exit', (code) => { resolve({ code, stdout, stderr }) })
    child.stdin.end(options.input)
  })
}

/**
 * A valid WASI command of about `bytes` bytes: a data segment of that size (pseudo-random, so that
 * nothing compresses it) and a `_start` that writes the segment's first 16 bytes as hex to stdout.
 * For transfer tests of large artifacts.
 */
export function bigModule (bytes: number): { module: Uint8Array, output: string } {
  const leb = (n: number): number[] => { const out: number[] = []; do { let b = n & 0x7f; n = Math.floor(n / 128); if (n !== 0) b |= 0x80; out.push(b) } while (n !== 0); return out }
  const str = (s: string): number[] => [...leb(s.length), ...Buffer.from(s)]
  const section = (id: number, content: number[] | Uint8Array): Uint8Array => Buffer.concat([Uint8Array.from([id, ...leb(content.length)]), Uint8Array.from(content)])
  const pages = Math.ceil((bytes + 65536) / 65536)
  // types: 0 = fd_write (i32 i32 i32 i32) -> i32, 1 = () -> ()
  const types = [2, 0x60, 4, 0x7f, 0x7f, 0x7f, 0x7f, 1, 0x7f, 0x60, 0, 0]
  const imports = [1, ...str('wasi_snapshot_preview1'), ...str('fd_write'), 0x00, 0]
  const funcs = [1, 1]
  const memory = [1, 0x00, ...leb(pages)]
  const exports = [2, ...str('memory'), 0x02, 0, ...str('_start'), 0x00, 1]
  // _start: build an iovec at address 0 pointing at 64 bytes of hex at 16, call fd_write(1, 0, 1, 8)
  const hex = '0123456789abcdef'
  const data = new Uint8Array(bytes)
  let x = 0x12345678
  for (let i = 0; i < bytes; i++) { x ^= x << 13; x ^= x >>> 17; x ^= x << 5; data[i] = x & 0xff }
  const head = [...data.subarray(0, 16)].map(b => hex[b >> 4]! + hex[b & 15]!).join('')
  const i32 = (v: number): number[] => [0x41, ...sleb(v)]
  const sleb = (v: number): number[] => { const out: number[] = []; while (true) { const b = v & 0x7f; v >>= 7; if ((v === 0 && (b & 0x40) === 0) || (v === -1 && (b & 0x40) !== 0)) { out.push(b); return out } out.push(b | 0x80) } }
  const body = [0,
    ...i32(0), ...i32(16), 0x36, 2, 0, // i32.store iov.base = 16
    ...i32(4), ...i32(head.length + 1), 0x36, 2, 0, // iov.len
    ...i32(1), ...i32(0), ...i32(1), ...i32(8), 0x10, 0, 0x1a, // fd_write, drop
    0x0b]
  const code = [1, ...leb(body.length), ...body]
  const segment = (offset: number, bytes: Uint8Array): number[] => [0x00, ...i32(offset), 0x0b, ...leb(bytes.length), ...bytes]
  const datas = Buffer.concat([Uint8Array.from([2]), Uint8Array.from(segment(16, Buffer.from(head + '\n'))), Uint8Array.from([0x00, ...i32(65536), 0x0b, ...leb(bytes)]), data])
  const module = Buffer.concat([
    Uint8Array.from([0, 0x61, 0x73, 0x6d, 1, 0, 0, 0]),
    section(1, types), section(2, imports), section(3, funcs), section(5, memory), section(7, exports), section(10, code), section(11, datas)
  ])
  return { module, output: `${head}\n` }
}

/**
 * Docker for the tests that need it: where it is not, they are skipped with the reason shown —
 * except in CI (CI=true), where its absence fails them.
 */
export async function dockerForTests (): Promise<{ docker: import('dockerode') | undefined, skip: string | false }> {
  const { connectDocker } = await import('../runtimes/docker/index.js')
  try {
    return { docker: await connectDocker(), skip: false }
  } catch (err) {
    if (process.env.CI === 'true') throw err
    return { docker: undefined, skip: `Docker not available here: ${(err as Error).message}` }
  }
}

/**
 * The command line of Node on an emulated ARM board, for the ARM test: qemu-user running Node's
 * linux build for it, as `test/arm/setup.sh` prepares them. Skipped with the reason where they are
 * not prepared, except in CI.
 */
export function armBoardsForTests (): { arm64: string[], armv7: string[], skip: string | false } {
  const root = process.env.EDGE_ARM_DIR ?? join(ROOT, '.cache', 'arm')
  const board = (name: string, qemuName: string): string[] | string => {
    const qemu = [`/usr/bin/${qemuName}`, `/usr/local/bin/${qemuName}`].find(p => existsSync(p))
    const dir = join(root, name)
    const missing = qemu === undefined ? qemuName : [join(dir, 'node'), join(dir, 'sysroot')].find(p => !existsSync(p))
    return missing !== undefined ? missing : [qemu as string, '-L', join(dir, 'sysroot'), join(dir, 'node')]
  }
  const arm64 = board('arm64', 'qemu-aarch64-static')
  const armv7 = board('armv7', 'qemu-arm-static')
  const missing = [arm64, armv7].find((b): b is string => typeof b === 'string')
  if (missing !== undefined) {
    const why = `no emulated ARM boards here (${missing} missing): run test/arm/setup.sh`
    if (process.env.CI === 'true') throw new Error(why)
    return { arm64: [], armv7: [], skip: why }
  }
  return { arm64: arm64 as string[], armv7: armv7 as string[], skip: false }
}

/** A container function from a directory (or file) of the examples or fixtures: its artifact and spec. */
export async function containerFunction (name: string, path: string, runtime: 'node' | 'python' | 'binary', extra: Partial<FunctionSpec> = {}): Promise<{ spec: FunctionSpec, code: Uint8Array }> {
  const { packFunction, artifactEntry } = await import('../protocol/index.js')
  const code = await packFunction(path.startsWith('/') ? path : `${ROOT}${path}`)
  const entry = await artifactEntry(runtime, code)
  return { code, spec: specFor(name, code, { runtime, entry, memoryBytes: 128 * 1024 * 1024, timeoutMs: 10_000, ...extra }) }
}

/**
 * A bare libp2p node of the project's own stack that holds a testnet's swarm key, bootstrapped
 * through its agent 1: a member misbehaving on purpose. Not started; the caller stops it.
 */
export async function bareMember (net: Testnet, dir: string, options: { trusts?: (signer: string) => boolean, privateKey?: PrivateKey } = {}): Promise<EdgeNode> {
  const { createNode } = await import('../agent/swarm/node.js')
  const { generateKeyPair } = await import('@libp2p/crypto/keys')
  return await createNode({
    privateKey: options.privateKey ?? await generateKeyPair('Ed25519'),
    swarmKey: readFileSync(net.state.swarmKey),
    listen: ['/ip4/127.0.0.1/tcp/0'],
    announce: [],
    bootstrap: [`${net.agent(1).addrs[0] ?? ''}`],
    mdns: false,
    datastorePath: join(dir, 'ds'),
    trusts: options.trusts ?? (() => false)
  })
}

/** A series of an agent's /metrics as written there (`name{label="value"}`), 0 if absent. */
export async function metricValue (api: string, series: string): Promise<number> {
  const body = await (await fetch(`${api}/metrics`)).text()
  const line = body.split('\n').find(l => l.startsWith(series + ' '))
  return line === undefined ? 0 : Number(line.slice(series.length + 1))
}

/** WASI imports for WAT fixtures: fd_close, fd_write, proc_exit. */
export const WASI_IMPORTS = `
  (import "wasi_snapshot_preview1" "fd_close" (func $close (param i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))`

/** Closes fds 0, 2 and 1 (as a C program's fclose(stdout) does), then exits with what a write to fd 1 returns (8, EBADF). */
export const CLOSES_STDIO_WAT = `(module ${WASI_IMPORTS}
  (memory (export "memory") 1)
  (data (i32.const 16) "still here?\\n")
  (func (export "_start")
    (i32.store (i32.const 0) (i32.const 16))
    (i32.store (i32.const 4) (i32.const 12))
    (drop (call $close (i32.const 0)))
    (drop (call $close (i32.const 2)))
    (if (call $close (i32.const 1)) (then (call $exit (i32.const 99))))
    (call $exit (call $write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))`

/** A WebAssembly module from its text format (wabt), for small WASI fixtures written in the test itself. */
export async function wat (source: string): Promise<Uint8Array> {
  const { default: wabtInit } = await import('wabt')
  const wabt = await wabtInit()
  const parsed = wabt.parseWat('fixture.wat', source)
  try {
    return Uint8Array.from(parsed.toBinary({}).buffer)
  } finally {
    parsed.destroy()
  }
}

/** `names.length` nodes of one swarm on loopback (not started), each with its own datastore; `close` stops them and removes their data. */
export async function bareNodes<T extends string[]> (...names: T): Promise<{ nodes: { [K in keyof T]: EdgeNode }, close: () => Promise<void> }> {
  const { mkdtempSync, rmSync } = await import('node:fs')
  const { tmpdir } = await import('node:os')
  const { generateKeyPair } = await import('@libp2p/crypto/keys')
  await import('../agent/polyfill.js')
  const { createNode } = await import('../agent/swarm/node.js')
  const { newSwarmKey } = await import('../agent/swarm/identity.js')
  const dir = mkdtempSync(join(tmpdir(), 'edge-nodes-'))
  const swarmKey = newSwarmKey()
  const nodes: EdgeNode[] = []
  for (const name of names) nodes.push(await createNode({ privateKey: await generateKeyPair('Ed25519'), swarmKey, listen: ['/ip4/127.0.0.1/tcp/0'], announce: [], bootstrap: [], mdns: false, datastorePath: join(dir, name), trusts: () => true }))
  return {
    nodes: nodes as { [K in keyof T]: EdgeNode },
    close: async () => {
      await Promise.all(nodes.map(async n => { await n.stop() }))
      rmSync(dir, { recursive: true, force: true })
    }
  }
}
