import { closeSync, existsSync, openSync, readFileSync, rmSync, writeSync } from 'node:fs'
import { join } from 'node:path'
import { DataDirLockedError } from './errors.js'

export const LOCK_FILE = 'agent.lock'

/**
 * One agent per data directory: `<dataDir>/agent.lock` holds the running agent's pid, created
 * exclusively. A lock whose process is gone (a kill -9, a power cut) or is no edge-agent (its pid
 * reused) is taken over. Returns the release.
 */
export function lockDataDir (dataDir: string): () => void {
  const file = join(dataDir, LOCK_FILE)
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      const fd = openSync(file, 'wx', 0o600)
      writeSync(fd, String(process.pid))
      closeSync(fd)
      return () => { if (heldBy(file) === process.pid) rmSync(file, { force: true }) }
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err
    }
    const pid = heldBy(file)
    if (pid !== undefined && pid !== process.pid && isEdgeAgent(pid)) {
      throw new DataDirLockedError(`${dataDir} is in use by another agent (pid ${pid}): stop it first, or give this one its own --data-dir`)
    }
    rmSync(file, { force: true })
  }
  throw new DataDirLockedError(`${dataDir} is being locked by another agent starting at the same time: start one agent per data directory`)
}

function heldBy (file: string): number | undefined {
  try {
    const pid = Number(readFileSync(file, 'utf8').trim())
    return Number.isInteger(pid) && pid > 0 ? pid : undefined
  } catch {
    return undefined
  }
}

/** Whether `pid` is alive and (where /proc tells) an edge-agent process. */
function isEdgeAgent (pid: number): boolean {
  try {
    process.kill(pid, 0)
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM'
  }
  const cmdline = `/proc/${pid}/cmdline`
  if (!existsSync(cmdline)) return true
  try {
    return readFileSync(cmdline, 'utf8').includes('edge-agent')
  } catch {
    return true
  }
}
