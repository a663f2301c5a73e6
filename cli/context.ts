import type { Command } from 'commander'
import { AgentClient } from './client.js'
import { UserError } from './errors.js'

export interface GlobalOptions {
  agent?: string
  node?: string
  json?: boolean
  debug?: boolean
}

export const DEFAULT_AGENT_URL = 'http://127.0.0.1:7070'

type TestnetModule = typeof import('../testnet/index.js')
let testnet: TestnetModule | undefined

/** The testnet's module, loaded only by commands that need it (`--node K`, `edge testnet …`): the CLI starts faster without. */
export async function loadTestnet (): Promise<TestnetModule> {
  testnet ??= await import('../testnet/index.js')
  return testnet
}

/** The testnet's module once loadTestnet has run (the CLI's preAction hooks see to it). */
export function testnetModule (): TestnetModule {
  if (testnet === undefined) throw new Error('the testnet module is not loaded: call loadTestnet() first')
  return testnet
}

/** Which agent the CLI talks to: --agent URL, --node K of the running testnet, or the local default. */
export function resolveAgentUrl (opts: GlobalOptions): string {
  if (opts.agent !== undefined && opts.node !== undefined) throw new UserError('use either --agent or --node, not both')
  if (opts.agent !== undefined) {
    try {
      return new URL(opts.agent).toString()
    } catch {
      throw new UserError(`bad --agent URL '${opts.agent}': use e.g. http://127.0.0.1:7070`)
    }
  }
  if (opts.node !== undefined) {
    const k = Number(opts.node)
    const { Testnet, defaultTestnetHome } = testnetModule()
    const net = Testnet.load(defaultTestnetHome())
    if (net === undefined) throw new UserError(`--node ${opts.node}: no testnet is running (start one with 'edge testnet up --peers N')`)
    if (!Number.isInteger(k) || k < 1 || k > net.agents.length) throw new UserError(`--node must be 1…${net.agents.length} for the running testnet`)
    return net.agent(k).api
  }
  return process.env.EDGE_AGENT_URL ?? DEFAULT_AGENT_URL
}

export function globals (cmd: Command): GlobalOptions {
  return cmd.optsWithGlobals<GlobalOptions>()
}

export function clientFor (cmd: Command): AgentClient {
  return new AgentClient(resolveAgentUrl(globals(cmd)))
}

/** A peer id as the user gave it (whole, a prefix, or a table's short form), resolved against the agent's peers and itself. */
export async function resolvePeer (client: AgentClient, text: string): Promise<string> {
  const { isWholePeerId, matchPeer } = await import('./output.js')
  if (isWholePeerId(text)) return text
  const [status, peers] = await Promise.all([client.status(), client.peers()])
  return matchPeer(text, [status.peerId, ...peers.map(p => p.peerId)])
}
