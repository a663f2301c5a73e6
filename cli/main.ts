import { readFileSync } from 'node:fs'
import { CommanderError } from 'commander'
import { UserError } from './errors.js'

/** The package's folder: two levels up from dist/cli/ and from dist/clibundle/ alike. */
export const PACKAGE_ROOT = new URL('../../', import.meta.url)

/** This package's version, from its package.json, for `--version`. */
export function packageVersion (): string {
  return (JSON.parse(readFileSync(new URL('package.json', PACKAGE_ROOT), 'utf8')) as { version: string }).version
}

const MIN_NODE_MAJOR = 20

export function checkNode (): void {
  const major = Number(process.versions.node.split('.')[0])
  if (major < MIN_NODE_MAJOR) {
    process.stderr.write(`error: edge-agent needs Node.js ${MIN_NODE_MAJOR} or newer; this is ${process.version}. Install Node 20+ (e.g. from nodejs.org or NodeSource).\n`)
    process.exit(1)
  }
}

const KNOWN_USER_ERRORS = new Set(['UserError', 'ApiError', 'ConfigError', 'AddressInUseError', 'JoinError', 'DataDirLockedError', 'BadRequestError', 'InvalidModuleError', 'RangeError'])

/** Runs a CLI: user errors print one line and exit 1; anything else is a bug (stack with --debug). */
export async function runCli (name: string, main: () => Promise<void>): Promise<void> {
  try {
    await main()
  } catch (err) {
    if (err instanceof CommanderError) process.exit(err.exitCode)
    const e = err as Error
    const debug = process.argv.includes('--debug')
    if (err instanceof UserError || KNOWN_USER_ERRORS.has(e.name)) {
      process.stderr.write(`${name}: error: ${e.message}\n`)
      if (debug && e.stack !== undefined) process.stderr.write(e.stack + '\n')
    } else {
      process.stderr.write(`${name}: unexpected error: ${e.message ?? String(err)}${debug ? '' : ' (run with --debug for details)'}\n`)
      if (debug && e.stack !== undefined) process.stderr.write(e.stack + '\n')
    }
    process.exitCode = 1
  }
}
