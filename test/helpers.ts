import { createHash } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import type { FunctionSpec } from '../protocol/index.js'

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
