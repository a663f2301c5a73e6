import { logger as debugLogger } from '@libp2p/logger'

/** What the runtimes log with: calling it is debug; `.error` always shows in the agent's log. */
export interface RuntimeLog {
  (format: string, ...args: unknown[]): void
  error: (format: string, ...args: unknown[]) => void
}

let factory: (name: string) => RuntimeLog = debugLogger

/**
 * The runtimes log through whatever logger the process that runs them provides (the agent's:
 * `useLogger`), and through @libp2p/logger's debug lines until one does. They cannot import the
 * agent's themselves: runtimes/ does not depend on agent/.
 */
export function useLogger (make: (name: string) => RuntimeLog): void {
  factory = make
}

export function logger (name: string): RuntimeLog {
  let made: { by: typeof factory, log: RuntimeLog } | undefined
  const current = (): RuntimeLog => {
    if (made?.by !== factory) made = { by: factory, log: factory(name) }
    return made.log
  }
  const log = ((format: string, ...args: unknown[]) => { current()(format, ...args) }) as RuntimeLog
  log.error = (format, ...args) => { current().error(format, ...args) }
  return log
}
