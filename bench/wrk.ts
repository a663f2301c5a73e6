import { execFile } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

export interface Figures { p50: number, p99: number, perSec: number }

const CONCURRENCY = Number(process.env.BENCH_CONCURRENCY ?? 16)

/**
 * POSTs `body` to `url` with wrk (a C load generator, `apt-get install wrk`), whose small cost
 * leaves the cores to the agent: p50/p99 of one connection, and inv/s with `concurrency`.
 * Undefined when wrk is not installed.
 */
export async function measureWrk (url: string, body: unknown, concurrency = CONCURRENCY): Promise<Figures | undefined> {
  const dir = mkdtempSync(join(tmpdir(), 'edge-bench-'))
  const script = join(dir, 'post.lua')
  writeFileSync(script, `wrk.method = "POST"\nwrk.body = ${JSON.stringify(JSON.stringify(body))}\nwrk.headers["Content-Type"] = "application/json"\n`)
  const wrk = async (args: string[]): Promise<string> => await new Promise((resolve, reject) => {
    execFile('wrk', [...args, '-s', script, url], (err, stdout) => { if (err != null) reject(err); else resolve(stdout) })
  })
  const unit = (v: string, u: string): number => Number(v) * (u === 'us' ? 0.001 : u === 's' ? 1000 : 1)
  try {
    await wrk(['-t1', '-c1', '-d1s'])
    const seq = await wrk(['-t1', '-c1', '-d4s', '--latency'])
    const par = await wrk(['-t1', `-c${concurrency}`, '-d4s'])
    const p = (label: string): number => {
      const m = new RegExp(`^\\s*${label}%\\s+([\\d.]+)(us|ms|s)`, 'm').exec(seq)
      return m === null ? NaN : unit(m[1] ?? '', m[2] ?? '')
    }
    if (/Non-2xx/.test(seq + par)) throw new Error('wrk saw error responses')
    return { p50: p('50'), p99: p('99'), perSec: Number(/Requests\/sec:\s+([\d.]+)/.exec(par)?.[1] ?? NaN) }
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined
    throw err
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
}

