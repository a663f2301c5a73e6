import { mkdirSync, rmSync, unwatchFile, watchFile, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { heldBack, logger, Throttle } from './log.js'
import { multiaddr } from '@multiformats/multiaddr'
import { RuntimeSet, useLogger, WasmRuntime, type Runtime } from '../runtimes/index.js'
import type { DockerRuntime } from '../runtimes/docker/index.js'
import {
  artifactEntry, BadRequestError, chunk, CONTAINER_RUNTIMES, DEFAULT_CONTAINER_MEMORY_BYTES, DEFAULT_MEMORY_BYTES, MIN_CONTAINER_MEMORY_BYTES, type ContainerOptions, type Manifest, DEFAULT_TIMEOUT_MS, FunctionNotFoundError, UntrustedManifestError, openRecord, ownerId, parseTarget, FUNCTION_NAME, RuntimeKind, signRecord, WIRE_VERSION, type Advert, type FunctionAnnouncement, type FunctionSpec
} from '../protocol/index.js'
import { advertTopic, AdvertService, FLOOD_ADVERTS_UP_TO, signAdvert, type ReceivedAdvert } from './swarm/adverts.js'
import { announcements, deployAnnouncement } from './swarm/announcements.js'
import type { GossipTopic } from './swarm/gossip.js'
import { Connectivity } from './swarm/connectivity.js'
import { AddressInUseError, ConfigError, StorageFullError, VersionConflictError } from './errors.js'
import { FetchService } from './code/fetch.js'
import { HelloService } from './swarm/hello.js'
import { Problems } from './swarm/handshakes.js'
import { Host } from './host.js'
import { createOwner, loadOwnerKey, OWNER_KEY_FILE, loadPeerKey, loadSwarmKey } from './swarm/identity.js'
import { Membership } from './membership.js'
import { lockDataDir } from './lock.js'
import { InvokeClient } from './calls/invoke-client.js'
import { InvokeServer } from './calls/invoke-server.js'
import { Metrics, outcomeOf, UNKNOWN_FUNCTION } from './metrics.js'
import { createNode, type EdgeNode } from './swarm/node.js'
import { PeerTable } from './swarm/peer-table.js'
import { FunctionRegistry, sha256Hex } from './code/registry.js'
import { Scheduler, outcomeJson, type InvokeOptions } from './calls/scheduler.js'
import { Journal } from './calls/journal.js'
import { AsyncCalls, type RequestSummary } from './calls/async-calls.js'
import type { CoapIngress } from './ingress/coap.js'
import { CallLog } from './calls/call-log.js'
import { ApiServer, isLoopbackName } from './ingress/api/server.js'
import { ManifestStore } from './code/manifests.js'
import { Replicator } from './code/replicator.js'
import { Trust, vouchedBy } from './code/trust.js'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import type { PrivateKey } from '@libp2p/interface'
import { readConfig, writeConfig, type AgentConfig } from './config.js'
import type { DeployOptions, FunctionInfo, ManifestInfo, PeerInfo, ReadinessInfo, StatusInfo } from '../protocol/api.js'

const log = logger('edge:agent')
// The runtimes' warnings and errors go to the agent's log.
useLogger(logger)

export const AGENT_VERSION = '0.1.0'
export const RUNTIME_FILE = 'agent.json'
/** How often the config is looked at for changed trusted keys. */
const TRUST_RELOAD_MS = 1000
/** Peers that join within this long of each other share one republish of the agent's DHT records. */
const REPUBLISH_AFTER_JOIN_MS = 500
/** This agent's own addresses are read again at least this often, besides when libp2p says they changed. */
const ADDRS_TTL_MS = 10_000

export type { DeployOptions } from '../protocol/api.js'

/** Written to `<dataDir>/agent.json` while the agent runs, for tools (testnet) to find it. */
export interface RuntimeInfo {
  pid: number
  peerId: string
  addrs: string[]
  api: string
  startedAt: number
}

/**
 * One edge agent: the only place that knows all the parts. Parts start in order and stop in
 * reverse; nothing runs before start().
 */
export class Agent {
  readonly dataDir: string
  readonly config: AgentConfig
  node!: EdgeNode
  runtimes!: RuntimeSet
  /** The Docker runtime, when this agent has Docker. */
  docker: DockerRuntime | undefined
  /** Why this agent runs no container functions, when it does not. */
  dockerProblem: string | undefined
  registry!: FunctionRegistry
  peers!: PeerTable
  scheduler!: Scheduler
  metrics!: Metrics
  #adverts!: AdvertService
  #advertsTopic!: GossipTopic<ReceivedAdvert>
  #announcements!: GossipTopic<FunctionAnnouncement>
  #connectivity!: Connectivity
  #hello!: HelloService
  #replicator!: Replicator
  #fetcher!: FetchService
  #addrs: { at: number, list: string[] } | undefined
  #client!: InvokeClient
  #server!: InvokeServer
  #api!: ApiServer
  manifests!: ManifestStore
  trust!: Trust
  /** This device among its owner's devices: the roster, joins (on the owner key's device), revocations. */
  membership!: Membership
  /** Async calls (`edge invoke --async`, `edge poll`), journaled under `<dataDir>/requests`. */
  calls!: AsyncCalls
  #coap: CoapIngress | undefined
  /** Recent calls that ran here, with their stderr (`edge logs`). */
  readonly callLog = new CallLog()
  #key!: PrivateKey
  /** Peers that joined and left the peer table since start (flapping shows here). */
  readonly #peerEvents = { joined: 0, left: 0 }
  /** This device's CPUs and memory as its cgroup limits them. */
  readonly #host = new Host()
  #startedAt = 0
  /** What went wrong setting up connections lately (another swarm key, a bootstrap peer that does not answer): logged, and in status. */
  readonly problems = new Problems((message) => { log.warn('%s', message) })
  #stopping: Promise<void> | undefined
  #republishTimer: NodeJS.Timeout | undefined
  /** Releases the data directory's lock (lock.ts). */
  #unlock: (() => void) | undefined

  constructor (dataDir: string, config: AgentConfig) {
    this.dataDir = dataDir
    this.config = config
  }

  get peerId (): string {
    return this.node.peerId.toString()
  }

  get apiUrl (): string {
    return this.#api.url
  }

  async start (): Promise<void> {
    const { config, dataDir } = this
    for (const addr of config.bootstrap) {
      try {
        if (multiaddr(addr).getComponents().find(c => c.name === 'p2p') === undefined) throw new Error('no /p2p/<peer id> at the end')
      } catch (err) {
        throw new ConfigError(`bad bootstrap address '${addr}': ${(err as Error).message}`)
      }
    }
    const apiToken = process.env.EDGE_API_TOKEN ?? config.apiToken
    if (!isLoopbackName(config.apiHost) && apiToken === '') {
      throw new ConfigError(`the API would listen on ${config.apiHost}, beyond this device: set a token (apiToken in config.json or $EDGE_API_TOKEN), or keep --api-host 127.0.0.1`)
    }
    this.#unlock = lockDataDir(dataDir)
    const privateKey = loadPeerKey(dataDir)
    this.#key = privateKey
    // A data dir from before owners (or made by hand): this device founds a swarm of its own.
    if (config.owner === '') {
      config.owner = await createOwner(dataDir, peerIdFromPrivateKey(privateKey).toString())
      writeConfig(dataDir, { owner: config.owner })
      log.info('this device now holds an owner key of its own (%s): edge-agent invite adds devices', config.owner)
    }
    const swarmKey = loadSwarmKey(dataDir)
    mkdirSync(join(dataDir, 'datastore'), { recursive: true })
    this.registry = new FunctionRegistry(dataDir, { versionsKept: config.versionsKept, quotaBytes: config.storageBytes, replicas: config.replicas, vouches: (peerId) => this.trust.trustsPeer(peerId) })
    // EDGE_IGNORE_ANSWER_LOAD=1 (the overload bench's comparison only): adverts alone tell peers' load.
    this.peers = new PeerTable({ expiryMs: config.peerExpirySeconds * 1000, answerLoad: process.env.EDGE_IGNORE_ANSWER_LOAD !== '1' })
    this.metrics = new Metrics(() => this.peers.size)
    // One slot per CPU this agent may use (at least 2 on a whole machine; 1 under a quota below one CPU).
    const { cpus } = this.#host.resources()
    const defaultSlots = cpus < 1 ? 1 : Math.max(2, Math.ceil(cpus))
    const slots = config.wasmSlots > 0 ? config.wasmSlots : defaultSlots
    const runtimes: Runtime[] = [new WasmRuntime({ slots, maxQueue: config.maxQueue })]
    this.docker = await this.#docker(privateKey, defaultSlots)
    if (this.docker !== undefined) runtimes.push(this.docker)
    this.runtimes = new RuntimeSet(runtimes)
    const trusted = new Set([peerIdFromPrivateKey(privateKey).toString(), ...config.trustedKeys, config.owner])
    this.node = await listening(createNode({
      // The keys as they are now (they change while the agent runs), once Trust exists.
      trusts: (signer) => this.trust?.trusts(signer) ?? trusted.has(signer),
      privateKey,
      swarmKey,
      listen: config.listen,
      announce: config.announce,
      bootstrap: config.bootstrap,
      mdns: config.mdns,
      datastorePath: join(dataDir, 'datastore'),
      problems: this.problems,
      metrics: this.metrics.registry
    }))
    this.node.addEventListener('self:peer:update', () => { this.#addrs = undefined })
    this.#fetcher = new FetchService(this.node, this.registry, { onBadBytes: () => { this.metrics.badChunks.inc() }, authorised: (peerId) => this.trust.trustsPeer(peerId) })
    this.manifests = new ManifestStore(this.node, dataDir, {
      heldChunks: () => this.registry.chunkCids(),
      onDeleted: (name, version) => { this.#dropFunction(name, version) }
    })
    this.#client = new InvokeClient(this.node)
    this.trust = new Trust({
      selfId: this.peerId,
      trusted: [...trusted],
      manifests: this.manifests,
      onDeleted: (name, version) => { this.#dropFunction(name, version) }
    })
    this.scheduler = new Scheduler({
      selfId: this.peerId,
      registry: this.registry,
      runtimes: this.runtimes,
      peers: this.peers,
      client: this.#client,
      fetcher: this.#fetcher,
      trust: this.trust,
      metrics: this.metrics,
      hold: (spec, code, cids) => { this.#hold(spec, code, cids, false) },
      callLog: this.callLog
    })
    this.calls = new AsyncCalls({
      journal: new Journal(dataDir),
      run: async (target, input, options, signal) => outcomeJson(await this.scheduler.invoke(target, input, { ...options, signal })),
      concurrency: config.asyncConcurrency,
      maxPending: config.asyncMaxPending,
      resultsTtlMs: config.resultsTtlMs,
      maxWaitMs: config.asyncMaxWaitMs
    })
    this.metrics.watchAsync(() => this.calls.counts())
    this.metrics.buildInfo(AGENT_VERSION)
    this.metrics.watchRuntimes(() => ({
      runtimes: this.runtimes.capacities().map(c => ({ kind: c.kind, slots: c.slots, busy: c.busy, queued: c.queued ?? 0 })),
      containers: this.docker?.containers().total
    }))
    this.metrics.watchCounter('edge_adverts_sent_total', 'Adverts this agent published', () => this.#adverts?.sent ?? 0)
    this.metrics.watchCounter('edge_gossip_dropped_total', 'Gossip messages dropped here as invalid (adverts and announcements)', () => (this.#advertsTopic?.dropped ?? 0) + (this.#announcements?.dropped ?? 0))
    this.#server = new InvokeServer(this.node, async (request, from, signal) => {
      const started = performance.now()
      const fn = this.registry.highestVersion(request.fn.name) > 0 ? request.fn.name : UNKNOWN_FUNCTION
      try {
        const r = await this.scheduler.executeOffloaded(request, from, signal)
        this.metrics.call(fn, 'received', 'ok', performance.now() - started)
        if (!r.warm) this.metrics.coldStart(fn, this.registry.localSpec(request.fn.name)?.runtime ?? 'unknown')
        return r
      } catch (err) {
        this.metrics.call(fn, 'received', outcomeOf(err as Error), performance.now() - started)
        throw err
      }
    }, (fn) => this.scheduler.loadOf(fn), (peerId) => this.trust.trustsPeer(peerId))
    this.#advertsTopic = advertTopic(this.node, ({ advert, signed }) => { this.#adverts.receive(advert, signed) }, (peer) => { this.#adverts?.peerListening(peer) }, () => this.peers.size <= FLOOD_ADVERTS_UP_TO)
    this.#adverts = new AdvertService(this.#advertsTopic, this.peers, this.peerId, {
      heartbeatMs: config.advertIntervalMs,
      snapshot: () => this.#advert(),
      onAdvert: (advert) => {
        this.registry.setAdvertised(advert.peerId, advert.functions)
        if (advert.lost !== undefined) this.#connectivity.checkLost(advert.lost)
      }
    })
    this.#announcements = announcements(this.node, (a) => { this.#onAnnouncement(a) })
    const ownerKey = loadOwnerKey(dataDir)
    if (ownerKey !== undefined && ownerId(ownerKey.publicKey) !== config.owner) log.error('%s is the key of owner %s, but this device belongs to %s: it answers no joins', OWNER_KEY_FILE, ownerId(ownerKey.publicKey), config.owner)
    this.membership = new Membership(this.node, {
      dataDir,
      selfId: this.peerId,
      owner: config.owner,
      ownerKey: ownerKey !== undefined && ownerId(ownerKey.publicKey) === config.owner ? ownerKey : undefined,
      trusted: () => this.config.trustedKeys,
      onChange: () => { this.#applyTrust() },
      publish: (roster) => { void this.#announcements.publish({ v: WIRE_VERSION, type: 'roster', by: this.peerId, at: Date.now(), roster }, { untilHeardMs: 10_000 }) }
    })
    this.#replicator = new Replicator({
      selfId: this.peerId,
      replicas: config.replicas,
      registry: this.registry,
      peers: this.peers,
      manifests: this.manifests,
      fetcher: this.#fetcher,
      trusts: (signer) => this.trust.trusts(signer),
      trustsPeer: (peerId) => this.trust.trustsPeer(peerId),
      // A peer runs what a key it trusts signed, and what its owner's devices signed.
      peerTrusts: (advert, signer) => (advert.trusted ?? []).includes(signer) || ((advert.trusted ?? []).includes(this.config.owner) && this.membership.devices().includes(signer)),
      signerOf: (ref) => this.manifests.signerOf(ref),
      hold: (spec, code, cids) => { this.#hold(spec, code, cids, true) }
    })
    this.#connectivity = new Connectivity(this.node, this.peers, { bootstrap: config.bootstrap, neighbours: config.neighbours, problems: this.problems })
    this.#hello = new HelloService(this.node, {
      advert: () => this.#adverts.current(),
      sign: async (advert) => await signAdvert(advert, this.#key),
      peers: () => this.peers.list().filter(e => this.peers.isConnected(e)).map(e => ({ peerId: e.peerId, addrs: e.advert.addrs })),
      signed: (max) => this.peers.signedAdverts(max),
      knows: (peerId) => this.peers.get(peerId) !== undefined,
      known: () => this.peers.size,
      receive: (advert, signed, ageMs) => { this.#adverts.receive(advert, signed, ageMs) },
      isNews: (advert, ageMs) => advert.peerId !== this.peerId && this.peers.isNews(advert, ageMs),
      hints: (peers) => { this.#connectivity.hint(peers) },
      roster: () => this.membership.roster?.record,
      takeRoster: (roster, from) => { void this.membership.offer(roster, from) }
    })
    this.peers.addEventListener('peer:leave', (evt) => {
      this.#peerEvents.left++
      log.info('peer %s left the peer table', evt.detail)
      this.registry.forgetPeer(evt.detail)
    })
    this.peers.addEventListener('peer:join', (evt) => {
      this.#peerEvents.joined++
      log.info('peer %s joined the peer table', evt.detail.peerId)
    })
    // A lone agent cannot store records in the DHT: put ours again when peers appear — once for
    // peers that appear together (a swarm starting, a partition healing), not once for each, and
    // only if this process has not put them yet or a put reached no one (every holder
    // republishing everything at every join was a storm of DHT walks in a swarm with functions).
    this.peers.addEventListener('peer:join', () => { if (this.manifests.unpublished) this.#republishSoon() })
    this.#api = new ApiServer(this, { host: config.apiHost, port: config.apiPort, token: apiToken })

    await this.runtimes.start()
    this.scheduler.start()
    // Before the node starts, so that its first connections (bootstrap) are greeted too.
    await this.#hello.start()
    await this.membership.start()
    this.#reloadTrust(true)
    await this.node.start()
    await this.#fetcher.start()
    await this.#server.start()
    this.#advertsTopic.start()
    this.#adverts.start()
    this.#announcements.start()
    this.peers.start()
    this.#connectivity.start()
    this.#replicator.start()
    await this.#prepareHeld()
    await this.calls.start()
    await this.#startCoap()
    await this.#api.start()
    this.#startedAt = Date.now()
    const info: RuntimeInfo = { pid: process.pid, peerId: this.peerId, addrs: this.addrs(), api: this.apiUrl, startedAt: this.#startedAt }
    writeFileSync(join(dataDir, RUNTIME_FILE), JSON.stringify(info, null, 2))
    // `edge-agent trust add/remove` edit the config while the agent runs: applied within a second.
    watchFile(join(dataDir, 'config.json'), { interval: TRUST_RELOAD_MS, persistent: false }, this.#onConfigChange)
    log.info('agent %s started: API %s, listening on %s, %d functions held, %d bootstrap peers, owner %s (%d devices%s)', this.peerId, this.apiUrl, this.addrs().join(' ') || 'nothing', this.registry.localSpecs().length, config.bootstrap.length, config.owner, this.membership.devices().length, this.membership.holdsOwnerKey ? ', its key is here' : '')
  }

  readonly #onConfigChange = (): void => { this.#reloadTrust() }

  /**
   * Takes the config's trusted keys and revocations (`edge-agent trust add/remove/revoke` edit it
   * while the agent runs): revocations are carried out on the device holding the owner key.
   */
  #reloadTrust (starting = false): void {
    let stored: AgentConfig
    try {
      stored = readConfig(this.dataDir)
    } catch (err) {
      log.error('could not read the trusted keys from the config: %e', err)
      return
    }
    this.config.trustedKeys = stored.trustedKeys
    this.config.revoked = stored.revoked
    this.#applyTrust(starting)
    if (stored.revoked.length > 0 && this.membership.holdsOwnerKey) {
      this.membership.revoke(stored.revoked).then(
        (ids) => { for (const id of ids) log.info('revoked device %s: it is off the owner\'s roster, everywhere within seconds', id) },
        (err: Error) => { log.error('could not revoke %s: %e', stored.revoked.join(', '), err) })
    }
  }

  /**
   * Trusts now what the config and the roster say: the config's deployer keys, the owner and the
   * owner's devices. What a key no longer trusted signed is checked again at its next call; its
   * device is no longer a peer.
   */
  #applyTrust (starting = false): void {
    const keys = [...new Set([...this.config.trustedKeys, this.config.owner, ...this.membership.devices()])].filter(k => k !== '')
    const { added, removed } = this.trust.setTrusted(keys, this.membership.roster?.revoked ?? [])
    for (const k of added) {
      this.registry.forgive(k)
      if (!starting) log.info('now trusting %s', k)
    }
    for (const k of removed) log.info('no longer trusting %s', k)
  }

  async stop (): Promise<void> {
    this.#stopping ??= this.#stop()
    await this.#stopping
  }

  async #stop (): Promise<void> {
    // Only this agent's own: one refused for a locked data dir leaves the running one's alone.
    if (this.#startedAt > 0) rmSync(join(this.dataDir, RUNTIME_FILE), { force: true })
    unwatchFile(join(this.dataDir, 'config.json'), this.#onConfigChange)
    const steps: Array<[string, () => unknown]> = [
      ['api', async () => { await this.#api?.stop() }],
      ['coap', async () => { await this.#coap?.stop() }],
      ['async calls', async () => { await this.calls?.stop() }],
      // Calls still running or waiting here are cut off as interrupted, not failed.
      ['scheduler', () => { this.scheduler?.stop() }],
      ['replicator', () => { this.#replicator?.stop(); clearTimeout(this.#republishTimer) }],
      ['connectivity', () => { this.#connectivity?.stop() }],
      ['peer table', () => { this.peers?.stop() }],
      ['announcements', () => { this.#announcements?.stop() }],
      ['adverts', () => { this.#adverts?.stop(); this.#advertsTopic?.stop() }],
      ['hello', async () => { await this.#hello?.stop() }],
      ['invoke server', async () => { await this.#server?.stop() }],
      ['membership', async () => { await this.membership?.stop() }],
      ['invoke client', async () => { await this.#client?.stop() }],
      ['fetch', async () => { await this.#fetcher?.stop() }],
      ['libp2p', async () => { await this.node?.stop() }],
      ['runtimes', async () => { await this.runtimes?.stop() }],
      ['lock', () => { this.#unlock?.() }]
    ]
    for (const [name, step] of steps) {
      try {
        await step()
      } catch (err) {
        log.error('stopping %s failed: %e', name, err)
      }
    }
  }

  /**
   * The Docker runtime, when Docker is there and not turned off (`--no-docker`); otherwise the
   * agent runs WASM functions only and says why in its status. Loaded only when used.
   */
  async #docker (key: PrivateKey, defaultSlots: number): Promise<DockerRuntime | undefined> {
    if (!this.config.docker) {
      this.dockerProblem = 'turned off (--no-docker)'
      return undefined
    }
    const { connectDocker, DockerRuntime } = await import('../runtimes/docker/index.js')
    try {
      const docker = await connectDocker()
      return new DockerRuntime({
        docker,
        owner: peerIdFromPrivateKey(key).toString(),
        dir: join(this.dataDir, 'unpacked'),
        slots: this.config.dockerSlots > 0 ? this.config.dockerSlots : defaultSlots,
        maxQueue: this.config.maxQueue,
        keepaliveMs: this.config.keepaliveMs,
        network: this.config.dockerNetwork
      })
    } catch (err) {
      this.dockerProblem = (err as Error).message
      log.info('no container functions here: %s', this.dockerProblem)
      return undefined
    }
  }

  /** Republishes what this agent keeps in the DHT in a moment, with the peers that joined by then. */
  #republishSoon (): void {
    if (this.#republishTimer !== undefined) return
    this.#republishTimer = setTimeout(() => {
      this.#republishTimer = undefined
      void this.manifests.republish()
    }, REPUBLISH_AFTER_JOIN_MS)
    this.#republishTimer.unref()
  }

  /** The CoAP ingress, when `--coap-listen` asks for one; loaded only then. */
  async #startCoap (): Promise<void> {
    if (this.config.coapListen === '') return
    const { CoapIngress } = await import('./ingress/coap.js')
    const coap = new CoapIngress({
      invoke: async (target, input, options) => await this.scheduler.invoke(target, input, options),
      submit: async (target, input, options) => await this.submit(target, input, options),
      poll: async (id) => await this.calls.get(id)
    }, this.config.coapListen)
    await coap.start()
    this.#coap = coap
    log.info('CoAP ingress on %s', coap.url)
  }

  /**
   * This agent's addresses. Kept until libp2p says they changed (or for ADDRS_TTL_MS): the advert
   * snapshot taken every 500 ms asked libp2p for them each time, ~5 % of an idle agent's CPU.
   */
  addrs (): string[] {
    const now = Date.now()
    if (this.#addrs === undefined || now - this.#addrs.at > ADDRS_TTL_MS) this.#addrs = { at: now, list: this.node.getMultiaddrs().map(String) }
    return this.#addrs.list
  }

  /** Prepares held code after a restart, so the first call is warm. Bad code is skipped, not fatal. */
  async #prepareHeld (): Promise<void> {
    for (const spec of this.registry.localSpecs()) {
      const code = await this.registry.readCode(spec.sha256)
      if (code === undefined) continue
      if (this.runtimes.for(spec.runtime) === undefined) continue
      await this.runtimes.prepare(spec, code).catch((err: Error) => { log.error('cannot prepare %s: %s', spec.name, err.message) })
    }
  }

  async deploy (name: string, code: Uint8Array, options: DeployOptions = {}): Promise<{ spec: FunctionSpec, shared: boolean }> {
    if (!FUNCTION_NAME.test(name)) throw new BadRequestError(`bad function name '${name}': use 1-63 of a-z, 0-9, '.', '_', '-', starting with a letter or digit`)
    if (code.byteLength === 0) throw new BadRequestError('empty module')
    const sha256 = sha256Hex(code)
    if (!this.registry.hasRoom(code.byteLength, sha256)) {
      throw new StorageFullError(`no room for ${code.byteLength} bytes of code: this agent holds ${this.registry.bytesHeld()} of its ${this.registry.quotaBytes} bytes (--storage), in code that fewer than ${this.config.replicas} other agents hold`)
    }
    if (options.record !== undefined) return await this.#deploySigned(name, code, sha256, options.record)
    const runtime = options.runtime ?? RuntimeKind.wasm
    const inContainer = CONTAINER_RUNTIMES.includes(runtime)
    if (!inContainer && (options.entry !== undefined || options.env !== undefined || options.container !== undefined)) {
      throw new BadRequestError('entry, env and container settings are for node, python and binary functions, not wasm')
    }
    const entry = inContainer ? await artifactEntry(runtime, code, options.entry) : '_start'
    const memoryBytes = options.memoryBytes ?? (inContainer ? DEFAULT_CONTAINER_MEMORY_BYTES : DEFAULT_MEMORY_BYTES)
    if (inContainer && memoryBytes < MIN_CONTAINER_MEMORY_BYTES) throw new BadRequestError(`--memory of a container function must be at least ${MIN_CONTAINER_MEMORY_BYTES / 1024 / 1024} MiB`)
    const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS
    const env = options.env ?? {}
    const container = inContainer && options.container !== undefined && Object.keys(options.container).length > 0 ? options.container : undefined
    const spec: FunctionSpec = {
      name,
      version: this.registry.highestVersion(name) + 1,
      runtime,
      sha256,
      size: code.byteLength,
      memoryBytes,
      timeoutMs,
      deployedAt: Date.now(),
      ...(inContainer ? { entry } : {}),
      ...(Object.keys(env).length > 0 ? { env } : {}),
      ...(container !== undefined ? { container } : {})
    }
    // The same code with the same settings is the same version: published again, not bumped.
    const current = this.registry.localSpec(name)
    if (current !== undefined && current.version >= this.registry.highestVersion(name) && sameSettings(current, spec)) {
      return { spec: current, shared: await this.manifests.republish().then(() => true, () => false) }
    }
    const chunks = chunk(code).map(c => c.cid.toString())
    const record = await signRecord({
      v: WIRE_VERSION,
      type: 'manifest',
      name,
      version: spec.version,
      runtime,
      entry,
      limits: { memoryBytes, timeoutMs, concurrency: 0 },
      labels: {},
      env,
      chunks,
      size: code.byteLength,
      sha256,
      deployedAt: spec.deployedAt,
      ...(container !== undefined ? { container } : {})
    }, this.#key)
    return await this.#install(spec, code, chunks, record)
  }

  /** A deploy whose manifest the deployer signed with its own key: checked against the code and this agent's trust. */
  async #deploySigned (name: string, code: Uint8Array, sha256: string, raw: Uint8Array): Promise<{ spec: FunctionSpec, shared: boolean }> {
    const { body, signer } = await openRecord(raw)
    if (body.type !== 'manifest') throw new BadRequestError('the signed record is a tombstone, not a manifest')
    if (body.name !== name) throw new BadRequestError(`the signed manifest is for '${body.name}', not '${name}'`)
    if (body.sha256 !== sha256 || body.size !== code.byteLength) throw new BadRequestError(`the signed manifest is for other code (sha256 ${body.sha256.slice(0, 12)}, not ${sha256.slice(0, 12)})`)
    const chunks = chunk(code).map(c => c.cid.toString())
    if (chunks.length !== body.chunks.length || chunks.some((cid, i) => cid !== body.chunks[i])) throw new BadRequestError('the signed manifest lists other chunks than the code has')
    if (CONTAINER_RUNTIMES.includes(body.runtime)) await artifactEntry(body.runtime, code, body.entry)
    if (!this.trust.trusts(signer)) {
      throw new UntrustedManifestError(`this agent does not trust the deployer key ${signer}: 'edge-agent trust add ${signer}' on it (and on every agent that should run its functions)`, { signer })
    }
    const highest = this.registry.highestVersion(name)
    if (body.version <= highest) throw new VersionConflictError(`the signed manifest is v${body.version} of '${name}', but v${highest} exists: sign it again with a higher version`)
    const spec: FunctionSpec = { name, version: body.version, sha256, ...vouchedBy(body) }
    return await this.#install(spec, code, chunks, raw)
  }

  /** Holds, announces and publishes a new version whose signed manifest is `record`. */
  async #install (spec: FunctionSpec, code: Uint8Array, chunks: string[], record: Uint8Array): Promise<{ spec: FunctionSpec, shared: boolean }> {
    // An agent without Docker may still deploy a container function: it keeps and serves the
    // code, and agents with Docker run it.
    if (this.runtimes.for(spec.runtime) !== undefined) await this.runtimes.prepare(spec, code)
    this.#hold(spec, code, chunks, true)
    this.trust.allow(spec, chunks)
    // The signed record rides along, so that peers need no DHT look-up to trust the new version.
    // Deploys are rare and must not be lost: an agent that just joined waits (a little) for a listener.
    const announced = this.#announcements.publish(deployAnnouncement(spec, this.peerId, record, code), { untilHeardMs: 10_000 })
    this.#adverts.publishSoon()
    log.info('deployed %s v%d (%s, %d bytes)', spec.name, spec.version, spec.sha256.slice(0, 12), code.byteLength)
    const stored = this.manifests.publish(record)
    void this.manifests.provide(chunks)
    void this.#replicator.reconcile()
    // Done once a peer has the signed manifest: heard in the announcement (one gossip hop, most
    // often first) or stored in the DHT (a walk: seconds in a swarm of 50, which every deploy
    // waited for). The DHT put goes on. A lone agent does not wait for an announcement nobody hears.
    const shared = this.peers.size === 0 ? await stored : await anyTrue([announced, stored])
    return { spec, shared }
  }

  /** Starts containers of a function ahead of its calls (`edge prewarm`), fetching its code first if need be. */
  async prewarm (target: string, count: number): Promise<{ name: string, version: number, started: number, warm: number }> {
    if (this.docker === undefined) throw new BadRequestError(`this agent runs no containers: ${this.dockerProblem ?? 'no Docker'}`)
    const spec = await this.scheduler.prepareHere(target)
    if (!CONTAINER_RUNTIMES.includes(spec.runtime)) throw new BadRequestError(`'${spec.name}' is a ${spec.runtime} function: only container functions are prewarmed (WASM modules are compiled as soon as they are here)`)
    const r = await this.docker.prewarm(spec, count)
    return { name: spec.name, version: spec.version, ...r }
  }

  /** Deletes every version of a function: signed by this agent, or by the deployer's key (`record`, a tombstone). */
  async delete (target: string, record?: Uint8Array): Promise<{ name: string, version: number }> {
    const { name, version: asked } = parseTarget(target)
    if (asked !== undefined) throw new BadRequestError(`'edge delete' removes every version of a function: give '${name}' alone`)
    const known = this.registry.resolve(name)
    const highest = Math.max(known.ref.version, this.registry.highestVersion(name))
    let version = highest
    if (record !== undefined) {
      const { body, signer } = await openRecord(record)
      if (body.type !== 'tombstone' || body.name !== name) throw new BadRequestError(`the signed record is not a tombstone of '${name}'`)
      if (!this.trust.trusts(signer)) throw new UntrustedManifestError(`this agent does not trust the key ${signer} that signed the delete: 'edge-agent trust add ${signer}' on it`, { signer })
      if (body.version < highest) throw new VersionConflictError(`the signed tombstone deletes up to v${body.version} of '${name}', but v${highest} exists: sign it again`)
      version = body.version
    }
    record ??= await signRecord({ v: WIRE_VERSION, type: 'tombstone', name, version, deployedAt: Date.now() }, this.#key)
    this.#dropFunction(name, version)
    log.info('deleted %s up to v%d', name, version)
    void this.#announcements.publish({ v: WIRE_VERSION, type: 'delete', name, version, by: this.peerId, at: Date.now(), record }, { untilHeardMs: 10_000 })
    await this.manifests.publish(record)
    this.#adverts.publishSoon()
    return { name, version }
  }

  /** Keeps code here (deployed, fetched or replicated) with its manifest; lets go of what it displaces. */
  /** Holds code here: deployed, replicated (`replica`: its record is put in the DHT too), or fetched to run a call. */
  #hold (spec: FunctionSpec, code: Uint8Array, cids: string[] | undefined, replica: boolean): void {
    const { dropped } = this.registry.hold(spec, code, cids)
    this.#released(dropped)
    if (this.registry.holds(spec)) void this.manifests.keep(spec, { put: replica })
  }

  #released (specs: FunctionSpec[]): void {
    for (const spec of specs) {
      if (!this.registry.holdsCode(spec.sha256)) this.runtimes.release(spec.sha256)
      this.manifests.drop(spec)
    }
  }

  #dropFunction (name: string, version: number): void {
    this.#released(this.registry.tombstone(name, version))
    this.manifests.forget(name, version)
  }

  #onAnnouncement (a: FunctionAnnouncement): void {
    if (a.type === 'roster') {
      void this.membership.offer(a.roster, a.by)
      return
    }
    if (a.type === 'delete') {
      // Deletes count only from keys this agent trusts, like deploys: the announcing agent's, or the
      // deployer key that signed the tombstone it carries.
      if (this.trust.trusts(a.by)) {
        log.info('%s deleted %s up to v%d', a.by, a.name, a.version)
        this.#dropFunction(a.name, a.version)
        return
      }
      if (a.record === undefined) {
        logIgnored(a.by, 'ignored a delete of %s from untrusted %s', a.name, a.by)
        this.metrics.ignoredAnnouncements.inc({ reason: 'unsigned' })
        return
      }
      openRecord(a.record)
        .then(({ body, signer }) => {
          if (body.type === 'tombstone' && body.name === a.name && body.version === a.version && this.trust.trusts(signer)) this.#dropFunction(a.name, a.version)
          else {
            logIgnored(signer, 'ignored a delete of %s signed by untrusted %s', a.name, signer)
            this.metrics.ignoredAnnouncements.inc({ reason: this.trust.trusts(signer) ? 'mismatched' : 'untrusted' })
          }
        })
        .catch((err: Error) => {
          log('delete of %s carried a bad record: %s', a.name, err.message)
          this.metrics.ignoredAnnouncements.inc({ reason: 'bad' })
        })
      return
    }
    // Known here only once its signed record is checked, its signer trusted, and the record kept:
    // a call made as soon as the function is listed then finds it without a DHT look-up. Any
    // other announcement changes nothing a name resolves to (gossip is open to every member).
    const record = a.record
    if (record === undefined) {
      log('ignored a deploy of %s v%d from %s without a signed manifest', a.fn.name, a.fn.version, a.holder)
      this.metrics.ignoredAnnouncements.inc({ reason: 'unsigned' })
      return
    }
    openRecord(record)
      .then((opened) => {
        const b = opened.body
        if (b.type !== 'manifest' || b.name !== a.fn.name || b.version !== a.fn.version || b.sha256 !== a.fn.sha256) {
          log('ignored a deploy of %s v%d from %s whose record is of another version', a.fn.name, a.fn.version, a.holder)
          this.metrics.ignoredAnnouncements.inc({ reason: 'mismatched' })
          return
        }
        if (!this.trust.trusts(opened.signer)) {
          logIgnored(opened.signer, 'ignored a deploy of %s v%d signed by untrusted %s', a.fn.name, a.fn.version, opened.signer)
          this.registry.refuse(a.fn, opened.signer)
          this.metrics.ignoredAnnouncements.inc({ reason: 'untrusted' })
          return
        }
        log.info('%s v%d (%s) deployed by %s', b.name, b.version, b.sha256.slice(0, 12), opened.signer === a.holder ? a.holder : `${a.holder}, signed by ${opened.signer}`)
        this.manifests.remember(opened, record)
        // Small code came along: a first call here runs it without a fetch.
        if (a.code !== undefined) this.#fetcher.offer(b.sha256, a.code)
        // What the version is comes from the signed manifest alone, not from the announcement.
        this.registry.learn({ name: b.name, version: b.version, sha256: b.sha256, ...vouchedBy(b) })
      })
      .catch((err: Error) => {
        log('announcement of %s carried a bad record: %s', a.fn.name, err.message)
        this.metrics.ignoredAnnouncements.inc({ reason: 'bad' })
      })
  }

  /** CPUs (whole, as adverts carry them: a 0.3 quota is 1) and memory, for adverts. */
  #resources (): { cpus: number, memTotal: number, memFree: number } {
    const r = this.#host.resources(5000)
    return { cpus: Math.max(1, Math.ceil(r.cpus)), memTotal: r.memTotal, memFree: r.memFree }
  }

  #advert (): Omit<Advert, 'seq' | 'sentAt'> {
    const caps = this.runtimes.capacities()
    return {
      v: WIRE_VERSION,
      type: 'advert',
      peerId: this.peerId,
      addrs: this.addrs().slice(0, 16),
      arch: process.arch,
      platform: process.platform,
      ...this.#resources(),
      runtimes: caps.map(c => ({ kind: c.kind, slots: c.slots, busy: c.busy })),
      queue: this.runtimes.all().reduce((n, r) => n + r.capacity().queued, 0),
      labels: this.config.labels,
      warm: this.runtimes.warm().slice(0, 256),
      functions: this.registry.localSpecs().slice(0, 256).map(s => ({ name: s.name, version: s.version, sha256: s.sha256 })),
      trusted: [...this.config.trustedKeys.slice(0, 63), this.config.owner],
      ...this.#lost()
    }
  }

  #lost (): { lost?: string[] } {
    const lost = this.#connectivity?.lost() ?? []
    return lost.length > 0 ? { lost } : {}
  }

  /**
   * Accepts a call to run in the background: the function must be known and trusted now, and the
   * call keeps the version it resolves to. Resolves once the call is in the journal.
   */
  async submit (target: string, input: Uint8Array, options: InvokeOptions): Promise<RequestSummary> {
    const ref = await this.scheduler.check(target, { ...(options.policy !== undefined ? { policy: options.policy } : {}), timeoutMs: 10_000 })
    return await this.calls.submit(`${ref.name}@${ref.version}`, input, options)
  }

  status (): StatusInfo {
    return {
      peerId: this.peerId,
      version: AGENT_VERSION,
      addrs: this.addrs(),
      api: this.apiUrl,
      arch: process.arch,
      platform: process.platform,
      node: process.version,
      ...this.#host.resources(),
      // memoryUsage() also reads every heap space's statistics (in a profile under a flood, ~1.5 ms a call): rss alone.
      rss: process.memoryUsage.rss(),
      uptimeMs: Date.now() - this.#startedAt,
      labels: this.config.labels,
      runtimes: this.runtimes.capacities(),
      docker: this.docker !== undefined ? { available: true, ...this.docker.containers() } : { available: false, reason: this.dockerProblem },
      functions: this.registry.localSpecs().map(s => ({ name: s.name, version: s.version, sha256: s.sha256 })),
      peers: this.peers.size,
      peerEvents: { ...this.#peerEvents },
      connections: this.node.getConnections().length,
      droppedMessages: this.#advertsTopic.dropped + this.#announcements.dropped,
      advertsSent: this.#adverts.sent,
      coap: this.#coap?.url ?? null,
      async: this.calls.counts(),
      problems: this.problems.list().map(p => ({ message: p.message, count: p.count, lastAt: p.lastAt })),
      owner: { id: this.config.owner, holdsKey: this.membership.holdsOwnerKey, roster: this.membership.roster?.seq ?? 0, devices: this.membership.devices().length }
    }
  }

  /** Whether this agent takes calls: started, not stopping, and — when it has bootstrap peers — with at least one peer. */
  readiness (): ReadinessInfo {
    const reasons: string[] = []
    if (this.#startedAt === 0) reasons.push('starting')
    if (this.#stopping !== undefined) reasons.push('stopping')
    const problem = this.problems.list()[0]
    if (this.config.bootstrap.length > 0 && this.peers.size === 0) reasons.push(`no peers yet${problem !== undefined ? `: ${problem.message}` : ''}`)
    return { ready: reasons.length === 0, reasons, peers: this.peers.size }
  }

  peerList (): PeerInfo[] {
    return this.peers.list().map(e => ({
      peerId: e.peerId,
      arch: e.advert.arch,
      platform: e.advert.platform,
      cpus: e.advert.cpus,
      addrs: e.advert.addrs,
      labels: e.advert.labels,
      runtimes: e.advert.runtimes.map(r => ({ ...r, free: this.peers.freeSlots(e, r.kind) })),
      queue: e.advert.queue,
      functions: e.advert.functions.map(f => `${f.name}@${f.version}`),
      rttMs: e.rttMs,
      advertAgeMs: this.peers.ageMs(e)
    }))
  }

  /** The newest signed manifest of `NAME` (or of `NAME@VERSION`) from the DHT (or as kept here), with whether this agent trusts its signer. */
  async manifest (target: string): Promise<ManifestInfo> {
    const { name, version } = parseTarget(target)
    const resolved = await this.manifests.resolve(name, version === undefined ? {} : { version })
    if (resolved === undefined) throw new FunctionNotFoundError(`no manifest for '${target}' in the DHT`)
    const { record, source } = resolved
    const { deployer: _key, ...body } = record.body
    return { ...body, signer: record.signer, trusted: this.trust.trusts(record.signer), source }
  }

  functionList (): FunctionInfo[] {
    return this.registry.list().map(k => ({
      name: k.ref.name,
      version: k.ref.version,
      sha256: k.ref.sha256,
      runtime: k.spec?.runtime ?? RuntimeKind.wasm,
      size: k.spec?.size,
      memoryBytes: k.spec?.memoryBytes,
      timeoutMs: k.spec?.timeoutMs,
      local: k.local,
      holders: [...(k.local ? [this.peerId] : []), ...k.holders],
      versions: this.registry.versions(k.ref.name).map(v => ({ version: v.ref.version, sha256: v.ref.sha256, holders: v.holders.size + (v.local ? 1 : 0), local: v.local }))
    }))
  }
}

/** Announcements from untrusted keys are logged once a minute per key: a member could send thousands. */
const ignoredAnnouncements = new Throttle(60_000)
function logIgnored (key: string, format: string, ...args: unknown[]): void {
  const held = ignoredAnnouncements.allow(key)
  if (held !== undefined) log.info(`${format}%s`, ...args, heldBack(held))
}

/** libp2p reports a taken listen address as a page of text: the first address in use, in one line. */
async function listening<T> (starting: Promise<T>): Promise<T> {
  try {
    return await starting
  } catch (err) {
    const taken = /(\/ip[46]\/[^\s:]+\/tcp\/\d+): Error: listen EADDRINUSE/.exec((err as Error).message)
    throw taken !== null ? new AddressInUseError(`listen address ${taken[1]} is in use: is another agent running? Use --listen`, { cause: err }) : err
  }
}

export async function createAgent (dataDir: string, config: AgentConfig): Promise<Agent> {
  return new Agent(dataDir, config)
}

/** Two specs of the same code that would run it the same way. */
function sameSettings (a: FunctionSpec, b: FunctionSpec): boolean {
  return a.sha256 === b.sha256 && a.runtime === b.runtime && a.memoryBytes === b.memoryBytes && a.timeoutMs === b.timeoutMs && a.entry === b.entry &&
    JSON.stringify(a.env ?? {}) === JSON.stringify(b.env ?? {}) && JSON.stringify(a.container ?? {}) === JSON.stringify(b.container ?? {})
}

/** True as soon as one of `promises` resolves true; false once all have resolved false (or failed). */
async function anyTrue (promises: Array<Promise<boolean>>): Promise<boolean> {
  return await new Promise((resolve) => {
    let left = promises.length
    if (left === 0) resolve(false)
    for (const p of promises) {
      p.then((ok) => { if (ok) resolve(true) }, () => {}).finally(() => { if (--left === 0) resolve(false) })
    }
  })
}
