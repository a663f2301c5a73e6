import { Command } from 'commander'
import { checkNode, packageVersion, runCli } from './main.js'
import { globals, loadTestnet } from './context.js'
import { registerFunctionCommands, registerKeyCommands } from './commands/functions.js'
import { registerInvokeCommand } from './commands/invoke.js'
import { registerAsyncCommands } from './commands/async.js'
import { registerSwarmCommands } from './commands/swarm.js'
import { registerTestnetCommands } from './commands/testnet.js'

checkNode()

const program = new Command('edge')
  .version(packageVersion(), '-V, --version', 'print the version')
  .description('deploy and invoke functions on an edge-agent swarm')
  .option('--agent <url>', 'talk to the agent at this API URL (default http://127.0.0.1:7070 or $EDGE_AGENT_URL)')
  .option('--node <k>', 'talk to agent K of the running testnet')
  .option('--json', 'machine-readable output')
  .option('--debug', 'print stack traces of unexpected errors')
  .exitOverride()
  .configureOutput({ outputError: (s, write) => { write(`edge: ${s}`) } })
  .showHelpAfterError()
  .hook('preAction', async (_program, action) => { if (globals(action).node !== undefined) await loadTestnet() })

registerFunctionCommands(program)
registerKeyCommands(program)
registerInvokeCommand(program)
registerAsyncCommands(program)
registerSwarmCommands(program)
registerTestnetCommands(program)

await runCli('edge', async () => {
  await program.parseAsync(process.argv)
})
