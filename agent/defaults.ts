import { homedir } from 'node:os'
import { join } from 'node:path'

/** What the CLI needs of the agent's defaults before it loads anything (`edge-agent --help`). */
export const DEFAULT_API_PORT = 7070

export function defaultDataDir (): string {
  return process.env.EDGE_AGENT_DATA_DIR ?? join(homedir(), '.edge-agent')
}
