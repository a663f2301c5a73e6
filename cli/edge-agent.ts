#!/usr/bin/env node
import '../agent/polyfill.js'
import { existsSync, readFileSync, statSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { Command, InvalidArgumentError, Option } from 'commander'
import { checkNode, packageVersion, runCli } from './main.js'
import { parseBytes, parseDuration } from '../protocol/units.js'
import { DEFAULT_API_PORT } from '../agent/defaults.js'
import { UserError } from './errors.js'

checkNode()

// Nothing heavy loads before a command runs (`edge-agent --help` starts as fast as node): the
// config and keys' modules when a command needs them, and for `start` the whole agent from the
// bundle, which would otherwise load its own copy of the keys' crypto libraries.
type Lib = Pick<typeof import('../agent/index.js'), 'defaultDataDir' | 'parseLabels' | 'readConfig' | 'writeConfig' | 'createOwner' | 'createPeerKey' | 'loadOwnerKey' | 'loadRoster' | 'loadSwarmKey' | 'newSwarmKey' | 'openRoster' | 'swarmKeyBytes' | 'validateSwarmKey' | 'writeSwarmKey' | 'SWARM_KEY_FILE' | 'decodeInvite' | 'encodeInvite' | 'makeInvite'>
let lib!: Lib
const loadLib = async (): Promise<void> => {
  lib = process.argv[2] === 'start'
    ? await loadAgent()
    : { ...await import('../agent/config.js'), ...await import('../agent/swarm/identity.js'), ...await import('../protocol/roster.js') }
}

/** A repeatable option: each use adds one (or, as its environment variable gives them, a comma-separated list). */
const collect = (value: string, previous: string[] = []): string[] => [...previous, ...value.split(',').map(v => v.trim()).filter(v => v !== '')]

/**
 * An option of `edge-agent start` that its environment variable may give too: EDGE_ and the flag
 * in capitals (--api-port → EDGE_API_PORT, --no-docker → EDGE_NO_DOCKER); --data-dir's is
 * EDGE_AGENT_DATA_DIR, as everywhere. The command line wins over the environment.
 */
function envOption (flags: string, description: string, parser?: (value: string, previous: any) => unknown): Option {
  const long = /--([a-z-]+)/.exec(flags)?.[1] ?? ''
  const name = long === 'data-dir' ? 'EDGE_AGENT_DATA_DIR' : `EDGE_${long.replace(/-/g, '_').toUpperCase()}`
  const option = new Option(flags, description).env(name)
  return parser === undefined ? option : option.argParser(parser)
}
// Parsers throw InvalidArgumentError: commander's line then names the flag, or the environment variable it came from.
const port = (value: string): number => {
  const n = Number(value)
  if (!Number.isInteger(n) || n < 0 || n > 65535) throw new InvalidArgumentError('expected a port, 0 to 65535')
  return n
}
const positive = (value: string): number => {
  const n = Number(value)
  if (!Number.isInteger(n) || n < 0) throw new InvalidArgumentError('expected a whole number')
  return n
}
const asArgument = <T>(parse: (value: string) => T) => (value: string): T => {
  try {
    return parse(value)
  } catch (err) {
    throw new InvalidArgumentError((err as Error).message)
  }
}
const duration = asArgument(parseDuration)
const size = asArgument(parseBytes)
interface InitOptions { dataDir?: string, swarmKey?: string, join?: string, listen?: string[], apiPort?: number, labels?: string, bootstrap?: string[], quiet?: boolean, json?: boolean }

async function init (opts: InitOptions): Promise<string> {
  const dataDir = resolve(opts.dataDir ?? lib.defaultDataDir())
  await checkAddrs([['--listen', opts.listen], ['--bootstrap', opts.bootstrap]])
  if (opts.join !== undefined) return await joinInit(dataDir, opts.join, opts)
  const fresh = !existsSync(join(dataDir, 'config.json'))
  const labels = opts.labels !== undefined ? lib.parseLabels(opts.labels) : undefined
  const swarmKey = opts.swarmKey === undefined ? undefined : readSwarmKeyFile(opts.swarmKey)
  const key = await lib.createPeerKey(dataDir)
  const { peerIdFromPrivateKey } = await import('@libp2p/peer-id')
  const keyFile = join(dataDir, lib.SWARM_KEY_FILE)
  if (swarmKey !== undefined) lib.writeSwarmKey(dataDir, swarmKey)
  else if (!existsSync(keyFile)) lib.writeSwarmKey(dataDir, lib.newSwarmKey())
  const config = lib.writeConfig(dataDir, {
    ...(opts.listen !== undefined ? { listen: opts.listen } : {}),
    ...(opts.apiPort !== undefined ? { apiPort: opts.apiPort } : {}),
    ...(labels !== undefined ? { labels } : {}),
    ...(opts.bootstrap !== undefined ? { bootstrap: opts.bootstrap } : {})
  })
  // A device that founds a swarm owns it: its owner key vouches for the devices it invites.
  const owner = config.owner !== '' ? config.owner : await lib.createOwner(dataDir, peerIdFromPrivateKey(key).toString())
  if (config.owner === '') lib.writeConfig(dataDir, { owner })
  const peerId = peerIdFromPrivateKey(key).toString()
  report(opts, { peerId, dataDir, owner, state: fresh ? 'initialised' : 'updated' }, [
    `${fresh ? 'initialised' : 'updated'} agent ${peerId} in ${dataDir}`,
    'add devices: \'edge-agent invite\' here (with the agent running), then \'edge-agent init --join TOKEN\' on each'
  ])
  return dataDir
}

/** What init did: lines of text, one JSON object with --json, nothing with --quiet. */
function report (opts: InitOptions, json: Record<string, unknown>, lines: string[]): void {
  if (opts.quiet === true) return
  process.stdout.write(opts.json === true ? JSON.stringify(json, null, 2) + '\n' : lines.join('\n') + '\n')
}

/** Refuses an unparseable multiaddr in one line, before anything is written. */
async function checkAddrs (lists: Array<[flag: string, addrs: string[] | undefined]>): Promise<void> {
  const { multiaddr } = await import('@multiformats/multiaddr')
  for (const [flag, addrs] of lists) {
    for (const a of addrs ?? []) {
      try {
        multiaddr(a)
      } catch (err) {
        throw new UserError(`bad ${flag} '${a}' (${(err as Error).message}): use a multiaddr such as /ip4/0.0.0.0/tcp/4001`)
      }
    }
  }
}

function readSwarmKeyFile (file: string): Uint8Array {
  if (!existsSync(file)) throw new UserError(`no such swarm key file: ${file}`)
  return lib.validateSwarmKey(readFileSync(file), file)
}

/**
 * `edge-agent init --join TOKEN`: a new device of the invite's owner. The inviting device is asked
 * first (it puts this device on the owner's roster); only then is anything written.
 */
async function joinInit (dataDir: string, token: string, opts: InitOptions): Promise<string> {
  if (opts.swarmKey !== undefined) throw new UserError('--join brings the swarm key: give --join or --swarm-key, not both')
  if (existsSync(join(dataDir, 'config.json'))) {
    throw new UserError(`${dataDir} holds an agent already: a device joins with a data directory of its own (remove ${dataDir}, or give --data-dir)`)
  }
  let invite
  try {
    invite = lib.decodeInvite(token)
  } catch (err) {
    throw new UserError((err as Error).message)
  }
  if (invite.expiresAt < Date.now()) throw new UserError(`this invite expired at ${new Date(invite.expiresAt).toISOString()}: make a new one with 'edge-agent invite' on the inviting device`)
  const labels = opts.labels !== undefined ? lib.parseLabels(opts.labels) : undefined
  const { joinSwarm, swarmKeyFromBytes, writeRoster } = await loadAgent()
  const { generateKeyPair } = await import('@libp2p/crypto/keys')
  const key = await generateKeyPair('Ed25519')
  const joined = await joinSwarm(invite, key)
  await lib.createPeerKey(dataDir, key)
  lib.writeSwarmKey(dataDir, swarmKeyFromBytes(invite.swarmKey))
  writeRoster(dataDir, joined.roster.record)
  lib.writeConfig(dataDir, {
    owner: invite.owner,
    trustedKeys: joined.trusted,
    bootstrap: [...new Set([...invite.addrs, ...(opts.bootstrap ?? [])])],
    ...(opts.listen !== undefined ? { listen: opts.listen } : {}),
    ...(opts.apiPort !== undefined ? { apiPort: opts.apiPort } : {}),
    ...(labels !== undefined ? { labels } : {})
  })
  const peerId = (await import('@libp2p/peer-id')).peerIdFromPrivateKey(key).toString()
  report(opts, { peerId, dataDir, owner: invite.owner, state: 'joined', devices: joined.roster.devices.length, via: joined.via }, [
    `joined as device ${peerId} of owner ${invite.owner} (${joined.roster.devices.length} devices) in ${dataDir}`,
    'start it: edge-agent start'
  ])
  return dataDir
}

const program = new Command('edge-agent')
  .version(packageVersion(), '-V, --version', 'print the version')
  .description('the edge-agent daemon: one per device')
  .option('--debug', 'print stack traces of unexpected errors')
  .exitOverride()
  .configureOutput({ writeErr: (s) => process.stderr.write(s), outputError: (s, write) => { write(`edge-agent: ${s}`) } })
  .hook('preAction', loadLib)

program.command('init')
  .description('create the data directory: config, a persisted Ed25519 peer identity, and a swarm key')
  .option('--data-dir <dir>', 'data directory (default: ~/.edge-agent or $EDGE_AGENT_DATA_DIR)')
  .option('--join <token>', 'join the swarm of an invite (edge-agent invite on a device of it): trusts its owner\'s devices')
  .option('--swarm-key <file>', 'use an existing swarm\'s key instead of making a new one (its devices trust this one only after edge-agent trust add)')
  .option('--listen <multiaddr>', 'libp2p listen address (repeatable)', collect)
  .option('--api-port <n>', `HTTP API port (default ${DEFAULT_API_PORT})`, port)
  .option('--labels <k=v,...>', 'labels advertised to peers')
  .option('--bootstrap <multiaddr>', 'peer to join through, with /p2p/<id> (repeatable)', collect)
  .option('--quiet', 'print nothing on success')
  .option('--json', 'print what was made as JSON: peer id, data dir, owner, and whether it was initialised, updated or joined')
  .action(async (opts: InitOptions) => { await init(opts) })

interface StartOptions { logLevel: string, logFormat: string, docker: boolean, dockerSlots?: number, keepalive?: number, asyncConcurrency?: number, resultsTtl?: number, advertInterval?: number, peerExpiry?: number, neighbours?: number, coapListen?: string, replicas?: number, storage?: number, versionsKept?: number, apiHost?: string, dataDir?: string, listen?: string[], announce?: string[], bootstrap?: string[], apiPort?: number, labels?: string, wasmSlots?: number, mdns: boolean }

program.command('start')
  .description('run the agent until SIGINT/SIGTERM')
  .addOption(envOption('--data-dir <dir>', 'data directory (created on first start)'))
  .addOption(envOption('--listen <multiaddr>', 'libp2p listen address, e.g. /ip4/0.0.0.0/tcp/4001 (repeatable)', collect))
  .addOption(envOption('--announce <multiaddr>', 'address to announce instead of the listen addresses (repeatable)', collect))
  .addOption(envOption('--bootstrap <multiaddr>', 'peer to join through, with /p2p/<id> (repeatable)', collect))
  .addOption(envOption('--api-port <n>', 'HTTP API port (0 = any free port)', port))
  .addOption(envOption('--api-host <ip>', 'HTTP API address (default 127.0.0.1; any other needs $EDGE_API_TOKEN)'))
  .addOption(envOption('--labels <k=v,...>', 'labels advertised to peers'))
  .addOption(envOption('--wasm-slots <n>', 'concurrent WASM calls (default: one per CPU, at least 2)', positive))
  .addOption(envOption('--replicas <n>', 'copies of each function\'s code the swarm keeps (default 3)', positive))
  .addOption(envOption('--storage <size>', 'disk space for function code, e.g. 500MiB (default 2GiB)', size))
  .addOption(envOption('--versions-kept <n>', 'versions of each function kept for NAME@VERSION (default 3)', positive))
  .addOption(envOption('--docker-slots <n>', 'container calls at once, and containers kept (default: one per CPU, at least 2)', positive))
  .addOption(envOption('--keepalive <duration>', 'idle time before a warm container is removed, e.g. 30s (default 60s)', duration))
  .addOption(envOption('--async-concurrency <n>', 'async calls run at once; the others wait in the journal (default 4)', positive))
  .addOption(envOption('--coap-listen <host:port>', 'serve CoAP calls (POST coap://host/NAME) on this address, e.g. 0.0.0.0:5683 (default: no CoAP)'))
  .addOption(envOption('--advert-interval <duration>', 'heartbeat of this agent\'s adverts (load, functions); changes go out at once (default 60s)', duration))
  .addOption(envOption('--peer-expiry <duration>', 'advert silence after which a connected peer leaves the peer table (default 240s)', duration))
  .addOption(envOption('--neighbours <n>', 'peers this agent picks to keep a connection to; others are dialled for calls (default 6; 0: all)', positive))
  .addOption(envOption('--results-ttl <duration>', 'how long async results are kept for edge poll, e.g. 10m (default 1h)', duration))
  .addOption(new Option('--log-level <level>', 'what the log on stderr says: error, warn, info (start, peers, deploys, failed calls, refusals) or debug').choices(['error', 'warn', 'info', 'debug']).default('info').env('EDGE_LOG_LEVEL'))
  .addOption(new Option('--log-format <format>', 'text lines (with journald priorities under systemd) or JSON lines').choices(['text', 'json']).default('text').env('EDGE_LOG_FORMAT'))
  .addOption(envOption('--no-docker', 'run WASM functions only, even where Docker is'))
  .addOption(envOption('--no-mdns', 'do not discover peers on the LAN with multicast DNS'))
  .action(async (opts: StartOptions) => {
    const dataDir = resolve(opts.dataDir ?? lib.defaultDataDir())
    // Arguments first: nothing is written for a command line that cannot start.
    await checkAddrs([['--listen', opts.listen], ['--announce', opts.announce], ['--bootstrap', opts.bootstrap]])
    if (!existsSync(join(dataDir, 'config.json'))) await init({ dataDir })
    const stored = lib.readConfig(dataDir)
    const config = {
      ...stored,
      ...(opts.listen !== undefined ? { listen: opts.listen } : {}),
      ...(opts.announce !== undefined ? { announce: opts.announce } : {}),
      ...(opts.bootstrap !== undefined ? { bootstrap: opts.bootstrap } : {}),
      ...(opts.apiPort !== undefined ? { apiPort: opts.apiPort } : {}),
      ...(opts.apiHost !== undefined ? { apiHost: opts.apiHost } : {}),
      ...(opts.labels !== undefined ? { labels: lib.parseLabels(opts.labels) } : {}),
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
    const { createAgent, configureLogs } = await loadAgent()
    configureLogs({ level: opts.logLevel as 'info', format: opts.logFormat as 'text' })
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
  const dataDir = resolve(opts.dataDir ?? lib.defaultDataDir())
  lib.readConfig(dataDir)
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
    const current = lib.readConfig(dataDir).trustedKeys
    lib.writeConfig(dataDir, { trustedKeys: [...new Set([...current, ...ids])] })
    for (const id of ids) process.stdout.write(`trusted ${id}\n`)
  })
trust.command('remove').argument('<key>').option('--data-dir <dir>')
  .action(async (key: string, opts: { dataDir?: string }) => {
    const dataDir = trustDir(opts)
    const id = await peerIdArg(key)
    lib.writeConfig(dataDir, { trustedKeys: lib.readConfig(dataDir).trustedKeys.filter(k => k !== id) })
    process.stdout.write(`no longer trusting ${id}\n`)
  })
trust.command('revoke')
  .description('take a device (a lost one) off the owner\'s roster for good: every device of the owner stops trusting it (run on the device holding the owner key)')
  .argument('<device>', 'the device\'s peer id, or a unique prefix of it (edge-agent trust list shows them)')
  .option('--data-dir <dir>')
  .action(async (device: string, opts: { dataDir?: string }) => {
    const dataDir = trustDir(opts)
    const config = lib.readConfig(dataDir)
    if (lib.loadOwnerKey(dataDir) === undefined) {
      throw new UserError(`this device does not hold the owner key of its swarm (owner ${config.owner || 'unknown'}): run 'edge-agent trust revoke' on the device that made the invites`)
    }
    const roster = await storedRoster(dataDir, config.owner)
    const id = await deviceArg(device, roster?.devices ?? [])
    const self = (await import('@libp2p/peer-id')).peerIdFromPrivateKey((await import('../agent/swarm/identity.js')).loadPeerKey(dataDir)).toString()
    if (id === self) throw new UserError('this is the device holding the owner key: it cannot revoke itself')
    lib.writeConfig(dataDir, { revoked: [...new Set([...config.revoked, id])], trustedKeys: config.trustedKeys.filter(k => k !== id) })
    process.stdout.write(`revoked ${id}: the owner's devices stop trusting it within seconds of this agent applying it (at once if it runs, else when it starts)\n`)
  })
trust.command('list').option('--data-dir <dir>').option('--json', 'print JSON')
  .action(async (opts: { dataDir?: string, json?: boolean }) => {
    const dataDir = trustDir(opts)
    const config = lib.readConfig(dataDir)
    const roster = await storedRoster(dataDir, config.owner)
    const view = {
      owner: config.owner,
      holdsOwnerKey: lib.loadOwnerKey(dataDir) !== undefined,
      roster: roster?.seq ?? 0,
      devices: roster?.devices ?? [],
      revoked: [...new Set([...(roster?.revoked ?? []), ...config.revoked])],
      trustedKeys: config.trustedKeys
    }
    if (opts.json === true) {
      process.stdout.write(JSON.stringify(view, null, 2) + '\n')
      return
    }
    const lines = [`owner    ${view.owner}${view.holdsOwnerKey ? ' (its key is on this device)' : ''}`]
    for (const d of view.devices) lines.push(`device   ${d}`)
    for (const d of view.revoked) lines.push(`revoked  ${d}${roster?.revoked.includes(d) === true ? '' : ' (not applied yet: the agent applies it when it runs)'}`)
    for (const k of view.trustedKeys) lines.push(`deployer ${k}`)
    process.stdout.write(lines.join('\n') + '\n')
  })

/** The roster stored in `dataDir`, when it checks and is of `owner`. */
async function storedRoster (dataDir: string, owner: string): Promise<Awaited<ReturnType<typeof lib.openRoster>>> {
  const record = lib.loadRoster(dataDir)
  if (record === undefined) return undefined
  const roster = await lib.openRoster(record).catch(() => undefined)
  return roster?.owner === owner ? roster : undefined
}

/** A device named by its whole peer id, a unique prefix of one of `known`, or a table's short form. */
async function deviceArg (text: string, known: string[]): Promise<string> {
  const { isWholePeerId, matchPeer } = await import('./output.js')
  return isWholePeerId(text) ? await peerIdArg(text) : matchPeer(text, known, 'edge-agent trust list')
}

program.command('invite')
  .description('print a token that joins a new device to this swarm as one of this owner\'s devices (edge-agent init --join TOKEN on it)')
  .option('--data-dir <dir>')
  .option('--address <multiaddr>', 'the address the new device dials, with or without /p2p/ID (default: this agent\'s own addresses; repeatable)', collect)
  .option('--ttl <duration>', 'how long the token joins devices, e.g. 1h, 7d (default 24h)', duration)
  .option('--json', 'print JSON: the token, its owner, addresses and expiry')
  .action(async (opts: { dataDir?: string, address?: string[], ttl?: number, json?: boolean }) => {
    const dataDir = trustDir(opts)
    const config = lib.readConfig(dataDir)
    const ownerKey = lib.loadOwnerKey(dataDir)
    if (ownerKey === undefined) {
      throw new UserError(config.owner === ''
        ? `this device has no owner key yet: start its agent once ('edge-agent start --data-dir ${dataDir}'), which makes one`
        : `this device does not hold the owner key of its swarm (owner ${config.owner}): invite from the device that holds it`)
    }
    const info = runningAgent(dataDir)
    if (info === undefined) throw new UserError(`the agent in ${dataDir} is not running: start it ('edge-agent start'), a joining device asks it for its place`)
    const { multiaddr } = await import('@multiformats/multiaddr')
    const addrs = opts.address !== undefined
      ? opts.address.map((a) => {
        let m
        try {
          m = multiaddr(a)
        } catch (err) {
          throw new UserError(`bad --address '${a}' (${(err as Error).message}): use a multiaddr such as /ip4/192.168.1.20/tcp/4001`)
        }
        const id = m.getComponents().find(c => c.name === 'p2p')?.value
        if (id !== undefined && id !== info.peerId) throw new UserError(`--address '${a}' names peer ${id}, but this agent is ${info.peerId}`)
        return id === undefined ? `${a}/p2p/${info.peerId}` : a
      })
      : dialable(info.addrs)
    if (addrs.length === 0) throw new UserError('this agent has no address another device could dial: give one with --address')
    const ttl = opts.ttl ?? 24 * 3600_000
    const invite = lib.makeInvite(ownerKey, { swarmKey: lib.swarmKeyBytes(lib.loadSwarmKey(dataDir)), addrs: addrs.slice(0, 8), nonce: (await import('node:crypto')).randomBytes(16), expiresAt: Date.now() + ttl })
    const token = lib.encodeInvite(invite)
    if (opts.json === true) {
      process.stdout.write(JSON.stringify({ token, owner: invite.owner, addrs: invite.addrs, expiresAt: new Date(invite.expiresAt).toISOString() }, null, 2) + '\n')
      return
    }
    process.stdout.write(token + '\n')
    if (process.stderr.isTTY) process.stderr.write(`on each new device: edge-agent init --join <token>  (valid until ${new Date(invite.expiresAt).toISOString()}; it holds the swarm key: keep it private)\n`)
  })

/** The agent running on `dataDir` as its agent.json says, if its process is alive. */
function runningAgent (dataDir: string): { peerId: string, addrs: string[] } | undefined {
  const file = join(dataDir, 'agent.json')
  if (!existsSync(file)) return undefined
  try {
    const info = JSON.parse(readFileSync(file, 'utf8')) as { pid: number, peerId: string, addrs: string[] }
    if (!Number.isInteger(info.pid) || info.pid <= 0) return undefined
    process.kill(info.pid, 0)
    return info
  } catch {
    return undefined
  }
}

/** An agent's addresses another device may dial: loopback ones only when there are no others. */
function dialable (addrs: string[]): string[] {
  const loopback = (a: string): boolean => /^\/ip4\/127\.|^\/ip6\/::1\//.test(a)
  const usable = addrs.filter(a => !a.includes('/p2p-circuit'))
  const outside = usable.filter(a => !loopback(a))
  return outside.length > 0 ? outside : usable
}

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
