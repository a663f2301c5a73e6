import { spawn } from 'node:child_process'
import { existsSync, openSync, readFileSync, closeSync } from 'node:fs'
import { fileURLToPath } from 'node:url'

export const EDGE_AGENT_BIN = fileURLToPath(new URL('../cli/edge-agent.js', import.meta.url))

/** Runs `edge-agent ARGS` to completion (init), failing with its stderr. */
export async function runAgentCommand (args: string[]): Promise<string> {
  return await new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [EDGE_AGENT_BIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'] })
    let out = ''
    let err = ''
    child.stdout.on('data', (d: Buffer) => { out += d.toString() })
    child.stderr.on('data', (d: Buffer) => { err += d.toString() })
    child.on('error', reject)
    child.on('exit', (code) => {
      if (code === 0) resolve(out)
      else reject(new Error(`edge-agent ${args[0] ?? ''} failed (exit ${code}): ${err.trim()}`))
    })
  })
}

/**
 * Node flags every agent runs with (examples/systemd sets them through NODE_OPTIONS). V8's pool of
 * helper threads (garbage collection, compilation) is 4 by default: on a device with one or two
 * cores for the agent, four runnable helpers left the agent's own thread a fifth of a core while
 * they ran, and its event loop turns twice as long. With 2, the abuse bench's floods cost agent 1
 * half the CPU, and its status p99 went from 60–210 ms to 37–56 ms in the made-up-name flood
 * (README's abuse table).
 */
export const AGENT_NODE_FLAGS = ['--v8-pool-size=2']

/**
 * Starts `edge-agent start ARGS` detached, logging to `logFile`; returns its pid. `node` is the
 * command line that runs Node: this process's own by default, or e.g. qemu-user running an ARM
 * build of Node, to emulate a board.
 */
export function spawnAgent (args: string[], logFile: string, env: NodeJS.ProcessEnv = {}, node: string[] = [process.execPath]): number {
  const fd = openSync(logFile, 'a')
  try {
    const [command, ...prefix] = node as [string, ...string[]]
    const child = spawn(command, [...prefix, ...AGENT_NODE_FLAGS, EDGE_AGENT_BIN, 'start', ...args], {
      detached: true,
      stdio: ['ignore', fd, fd],
      env: { ...process.env, ...env }
    })
    child.unref()
    if (child.pid === undefined) throw new Error('could not spawn edge-agent')
    return child.pid
  } finally {
    closeSync(fd)
  }
}

/** True if `pid` is alive and is the agent of `dataDir` (so that we never signal a stranger). */
export function isOurAgent (pid: number, dataDir: string): boolean {
  // pid 0 or below would signal a whole process group: never.
  if (!Number.isInteger(pid) || pid <= 0) return false
  try {
    process.kill(pid, 0)
  } catch {
    return false
  }
  const cmdline = `/proc/${pid}/cmdline`
  if (!existsSync(cmdline)) return true
  try {
    const args = readFileSync(cmdline, 'utf8').split('\0')
    return args.includes(dataDir) && args.some(a => a.endsWith('edge-agent.js'))
  } catch {
    return false
  }
}

export function isAlive (pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}

export async function sleep (ms: number): Promise<void> {
  await new Promise(resolve => setTimeout(resolve, ms))
}

/** Sends `signal` to our agent and waits for it to exit; escalates to SIGKILL after `graceMs`. */
export async function stopAgent (pid: number, dataDir: string, signal: NodeJS.Signals = 'SIGTERM', graceMs = 8000): Promise<void> {
  if (!isOurAgent(pid, dataDir)) return
  process.kill(pid, signal)
  const until = Date.now() + graceMs
  while (isAlive(pid) && Date.now() < until) await sleep(50)
  if (isAlive(pid) && isOurAgent(pid, dataDir)) {
    process.kill(pid, 'SIGKILL')
    while (isAlive(pid)) await sleep(20)
  }
}
