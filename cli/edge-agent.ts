#!/usr/bin/env node
import '../agent/polyfill.js'
import { existsSync, readFileSync, statSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { Command, Option } from 'commander'
import { checkNode, packageVersion, runCli } from './main.js'
import { UserError } from './errors.js'

checkNode()

// init needs only config and keys; libp2p and the rest load when an agent starts — then all of
// it from the bundle, which would otherwise load its own copy of the keys' crypto libraries.
const lib = process.argv[2] === 'start'
  ? await loadAgent()
  : { ...await import('../agent/config.js'), ...await import('../protocol/units.js'), ...await import('../agent/swarm/identity.js') }
const { defaultDataDir, parseLabels, readConfig, writeConfig, DEFAULT_API_PORT, parseBytes, parseDuration, createPeerKey, newSwarmKey, validateSwarmKey, writeSwarmKey, SWARM_KEY_FILE } = lib

const collect = (value: string, previous: string[] = []): string[] => [...previous, value]
const port = (value: string): number => {
  const n = Number(value)
  if (!Number.isInteger(n) || n < 0 || n > 65535) throw new UserError(`bad port '${value}'`)
  return n
}
const positive = (value: string): number => {
  const n = Number(value)
  if (!Number.isInteger(n) || n < 0) throw new UserError(`expected a number, got '${value}'`)
  return n
}
interface InitOptions { dataDir?: string, swarmKey?: string, listen?: string[], apiPort?: number, labels?: string, bootstrap?: string[], quiet?: boolean }

async function init (opts: InitOptions): Promise<string> {
  const dataDir = resolve(opts.dataDir ?? defaultDataDir())
  const fresh = !existsSync(join(dataDir, 'config.json'))
  const key = await createPeerKey(dataDir)
  const { peerIdFromPrivateKey } = await import('@libp2p/peer-id')
  const keyFile = join(dataDir, SWARM_KEY_FILE)
  if (opts.swarmKey !== undefined) {
    if (!existsSync(opts.swarmKey)) throw new UserError(`no such swarm key file: ${opts.swarmKey}`)
    writeSwarmKey(dataDir, validateSwarmKey(readFileSync(opts.swarmKey), opts.swarmKey))
  } else if (!existsSync(keyFile)) {
    writeSwarmKey(dataDir, newSwarmKey())
  }
  writeConfig(dataDir, {
    ...(opts.listen !== undefined ? { listen: opts.listen } : {}),
    ...(opts.apiPort !== undefined ? { apiPort: opts.apiPort } : {}),
    ...(opts.labels !== undefined ? { labels: parseLabels(opts.labels) } : {}),
    ...(opts.bootstrap !== undefined ? { bootstrap: opts.bootstrap } : {})
  })
  if (opts.quiet !== true) {
    process.stdout.write(`${fresh ? 'initialised' : 'updated'} agent ${peerIdFromPrivateKey(key).toString()} in ${dataDir}\n`)
    process.stdout.write(`swarm key: ${keyFile} (copy it to every device of this swarm, or pass it to their 'edge-agent init --swarm-key')\n`)
  }
  return dataDir
}

const program = new Command('edge-agent')
  .version(packageVersion(), '-V, --version', 'print the version')
  .description('the edge-agent daemon: one per device')
  .option('--debug', 'print stack traces of unexpected errors')
  .exitOverride()
  .configureOutput({ writeErr: (s) => process.stderr.write(s) })

program.command('init')
  .description('create the data directory: config, a persisted Ed25519 peer identity, and a swarm key')
  .option('--data-dir <dir>', 'data directory (default: ~/.edge-agent or $EDGE_AGENT_DATA_DIR)')
  .option('--swarm-key <file>', 'join an existing swarm with its key instead of making a new one')
  .option('--listen <multiaddr>', 'libp2p listen address (repeatable)', collect)
  .option('--api-port <n>', `HTTP API port (default ${DEFAULT_API_PORT})`, port)
  .option('--labels <k=v,...>', 'labels advertised to peers')
  .option('--bootstrap <multiaddr>', 'peer to join through, with /p2p/<id> (repeatable)', collect)
  .option('--quiet', 'print nothing on success')
  .action(async (opts: InitOptions) => { await init(opts) })

interface StartOptions { docker: boolean, dockerSlots?: number, keepalive?: number, asyncConcurrency?: number, resultsTtl?: number, advertInterval?: number, peerExpiry?: number, neighbours?: number, coapListen?: string, replicas?: number, storage?: number, versionsKept?: number, apiHost?: string, dataDir?: string, listen?: string[], announce?: string[], bootstrap?: string[], apiPort?: number, labels?: string, wasmSlots?: number, mdns: boolean }

program.command('start')
  .description('run the agent until SIGINT/SIGTERM')
  .option('--data-dir <dir>', 'data directory (created on first start)')
  .option('--listen <multiaddr>', 'libp2p listen address, e.g. /ip4/0.0.0.0/tcp/4001 (repeatable)', collect)
  .option('--announce <multiaddr>', 'address to announce instead of the listen addresses (repeatable)', collect)
  .option('--bootstrap <multiaddr>', 'peer to join through, with /p2p/<id> (repeatable)', collect)
  .option('--api-port <n>', 'HTTP API port (0 = any free port)', port)
  .option('--api-host <ip>', 'HTTP API address (default 127.0.0.1; any other needs $EDGE_API_TOKEN)')
  .option('--labels <k=v,...>', 'labels advertised to peers')
  .option('--wasm-slots <n>', 'concurrent WASM calls (default: one per CPU, at least 2)', positive)
  .option('--replicas <n>', 'copies of each function\'s code the swarm keeps (default 3)', positive)
  .option('--storage <size>', 'disk space for function code, e.g. 500MiB (default 2GiB)', parseBytes)
  .option('--versions-kept <n>', 'versions of each function kept for NAME@VERSION (default 3)', positive)
  .option('--docker-slots <n>', 'container calls at once, and containers kept (default: one per CPU, at least 2)', positive)
  .option('--keepalive <duration>', 'idle time before a warm container is removed, e.g. 30s (default 60s)', parseDuration)
  .option('--async-concurrency <n>', 'async calls run at once; the others wait in the journal (default 4)', positive)
  .option('--coap-listen <host:port>', 'serve CoAP calls (POST coap://host/NAME) on this address, e.g. 0.0.0.0:5683 (default: no CoAP)')
  .option('--advert-interval <duration>', 'heartbeat of this agent\'s adverts (load, functions); changes go out at once (default 60s)', parseDuration)
  .option('--peer-expiry <duration>', 'advert silence after which a connected peer leaves the peer table (default 120s)', parseDuration)
  .option('--neighbours <n>', 'peers this agent picks to keep a connection to; others are dialled for calls (default 6; 0: all)', positive)
  .option('--results-ttl <duration>', 'how long async results are kept for edge poll, e.g. 10m (default 1h)', parseDuration)
  .addOption(new Option('--no-docker', 'run WASM functions only, even where Docker is'))
  .addOption(new Option('--no-mdns', 'do not discover peers on the LAN with multicast DNS'))
  .action(async (opts: StartOptions) => {
    const dataDir = resolve(opts.dataDir ?? defaultDataDir())
    // Arguments first: nothing is written for a command line that cannot start.
    const { multiaddr } = await import('@multiformats/multiaddr')
    for (const [flag, addrs] of [['--listen', opts.listen], ['--announce', opts.announce], ['--bootstrap', opts.bootstrap]] as const) {
      for (const a of addrs ?? []) {
        try {
          multiaddr(a)
        } catch (err) {
          throw new UserError(`bad ${flag} '${a}' (${(err as Error).message}): use a multiaddr such as /ip4/0.0.0.0/tcp/4001`)
        }
      }
    }
    if (!existsSync(join(dataDir, 'config.json'))) await init({ dataDir })
    const stored = readConfig(dataDir)
    const config = {
      ...stored,
      ...(opts.listen !== undefined ? { listen: opts.listen } : {}),
      ...(opts.announce !== undefined ? { announce: opts.announce } : {}),
      ...(opts.bootstrap !== undefined ? { bootstrap: opts.bootstrap } : {}),
      ...(opts.apiPort !== undefined ? { apiPort: opts.apiPort } : {}),
      ...(opts.apiHost !== undefined ? { apiHost: opts.apiHost } : {}),
      ...(opts.labels !== undefined ? { labels: parseLabels(opts.labels) } : {}),
      ...(opts.wasmSlots !== undefined ? { wasmSlots: opts.wasmSlots } : {}),
      ...(opts.replicas !== undefined ? { replicas: Math.max(1, opts.replicas) } : {}),
      ...(opts.storage !== undefined ? { storageBytes: opts.storage } : {}),
      ...(opts.versionsKept !== undefined ? { versionsKept: Math.max(1, opts.versionsKept) } : {}),
      ...(opts.dockerSlots !== undefined ? { dockerSlots: opts.dockerSlots } : {}),
      ...(opts.keepalive !== undefined ? { keepaliveMs: opts.keepalive } : {}),
      ...(opts.asyncConcurrency !== undefined ? { asyncConcurrency: opts.asyncConcurrency } : {}),
      ...(opts.resultsTtl !== undefined ? { resultsTtlMs: opts.resultsTtl } : {}),
      ...(opts.advertInterval !== undefined ? { advertIntervalMs: Math.max(50, opts.advertInterval) } : {}),
      ...(opts.peerExpiry !== undefined ? { peerExpirySeconds: Math.max(0.2, opts.peerExpiry / 1000) } : {}),
      ...(opts.neighbours !== undefined ? { neighbours: opts.neighbours } : {}),
      ...(opts.coapListen !== undefined ? { coapListen: opts.coapListen } : {}),
      mdns: opts.mdns && stored.mdns,
      docker: opts.docker && stored.docker
    }
    const { createAgent } = await loadAgent()
    const agent = await createAgent(dataDir, config)
    // One peer's failure must never take the agent down (e.g. NoValidAddressesError from a dial).
    process.on('unhandledRejection', (reason) => {
      process.stderr.write(`edge-agent: ignored unhandled rejection: ${(reason as Error)?.message ?? String(reason)}\n`)
    })
    let stopping = false
    const shutdown = (signal: string): void => {
      if (stopping) return
      stopping = true
      process.stdout.write(`${signal}: stopping\n`)
      const force = setTimeout(() => { process.stderr.write('edge-agent: stop took too long, exiting\n'); process.exit(1) }, 10_000)
      force.unref()
      agent.stop().then(() => { process.exit(0) }, (err: Error) => { process.stderr.write(`edge-agent: error while stopping: ${err.message}\n`); process.exit(1) })
    }
    process.on('SIGINT', () => { shutdown('SIGINT') })
    process.on('SIGTERM', () => { shutdown('SIGTERM') })
    try {
      await agent.start()
    } catch (err) {
      await agent.stop().catch(() => {})
      throw err
    }
    process.stdout.write(`edge-agent ${agent.peerId}\n`)
    for (const addr of agent.addrs()) process.stdout.write(`  listening ${addr}\n`)
    process.stdout.write(`  api       ${agent.apiUrl}\n`)
    process.stdout.write(`  data      ${dataDir}\n`)
  })

const runtimes = program.command('runtimes').description('container runtime images (node, python3, binary), built offline from this host')
runtimes.command('build')
  .description('build the runtime images that are missing or out of date (the agent also does this on demand)')
  .argument('[kinds...]', 'node, python3 and/or binary (default: all)')
  .action(async (kinds: string[]) => {
    const { connectDocker, buildRuntimeImage, IMAGE_KINDS } = await import('../runtimes/docker/index.js')
    const wanted = kinds.length === 0 ? [...IMAGE_KINDS] : kinds
    for (const k of wanted) {
      if (!(IMAGE_KINDS as readonly string[]).includes(k)) throw new UserError(`unknown runtime '${k}': use ${IMAGE_KINDS.join(', ')}`)
    }
    const docker = await connectDocker().catch((err: Error) => { throw new UserError(err.message) })
    for (const kind of wanted as typeof IMAGE_KINDS[number][]) {
      const image = await buildRuntimeImage(docker, kind).catch((err: Error) => { throw new UserError(`${kind}: ${err.message}`) })
      process.stdout.write(`${kind.padEnd(8)} ${image.tag}  ${image.built ? `built in ${(image.ms / 1000).toFixed(1)} s` : 'up to date'}\n`)
    }
  })

const trust = program.command('trust').description('deployer keys (peer ids) whose signed manifests this agent runs, besides its own')
const trustDir = (opts: { dataDir?: string }): string => {
  const dataDir = resolve(opts.dataDir ?? defaultDataDir())
  readConfig(dataDir)
  return dataDir
}
const peerIdArg = async (key: string): Promise<string> => {
  const { peerIdFromString } = await import('@libp2p/peer-id')
  try {
    const id = peerIdFromString(key)
    if (id.type !== 'Ed25519') throw new Error(`a ${id.type} key`)
    return id.toString()
  } catch (err) {
    throw new UserError(`'${key}' is not an Ed25519 peer id (${(err as Error).message}): use the deployer's peer id, as 'edge inspect' shows it`)
  }
}
trust.command('add').argument('<keys...>', 'peer ids of deployers').option('--data-dir <dir>')
  .action(async (keys: string[], opts: { dataDir?: string }) => {
    const dataDir = trustDir(opts)
    const ids = await Promise.all(keys.map(peerIdArg))
    const current = readConfig(dataDir).trustedKeys
    writeConfig(dataDir, { trustedKeys: [...new Set([...current, ...ids])] })
    for (const id of ids) process.stdout.write(`trusted ${id}\n`)
  })
trust.command('remove').argument('<key>').option('--data-dir <dir>')
  .action(async (key: string, opts: { dataDir?: string }) => {
    const dataDir = trustDir(opts)
    const id = await peerIdArg(key)
    writeConfig(dataDir, { trustedKeys: readConfig(dataDir).trustedKeys.filter(k => k !== id) })
    process.stdout.write(`no longer trusting ${id}\n`)
  })
trust.command('list').option('--data-dir <dir>')
  .action(async (opts: { dataDir?: string }) => {
    const keys = readConfig(trustDir(opts)).trustedKeys
    process.stdout.write(keys.length === 0 ? 'no keys trusted besides this agent\'s own\n' : keys.join('\n') + '\n')
  })

await runCli('edge-agent', async () => {
  await program.parseAsync(process.argv)
})

/**
 * The agent's code: `npm run build` bundles it (dist/bundle), which loads with about 0.4 s of CPU
 * instead of the 1.05 s its thousand modules take — on a Pi, seconds at every start; in a testnet
 * of 50 on two cores, half a minute. Docker's and CoAP's parts are chunks loaded when used;
 * comments and whitespace are stripped (names are kept, for stack traces), so the 1.9 MB of source
 * that V8 keeps is ASCII, one byte a character: with its comments it was 7.7 MiB of two-byte
 * source. A bundle older than the compiled modules (a `tsc` without the bundle step) is not used:
 * the modules are.
 */
async function loadAgent (): Promise<typeof import('../agent/index.js')> {
  const bundle = new URL('../bundle/index.js', import.meta.url)
  let fresh = false
  try {
    fresh = statSync(bundle).mtimeMs >= statSync(new URL('../agent/agent.js', import.meta.url)).mtimeMs
  } catch {
    // no bundle: the modules
  }
  return fresh ? await import(bundle.href) as typeof import('../agent/index.js') : await import('../agent/index.js')
}
