import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import './yamux-fix.js'
import { GOSSIP, PING_INTERVAL_MS } from './tuning.js'
import { bootstrap } from '@libp2p/bootstrap'
import { gossipsub } from '@libp2p/gossipsub'
import { identify } from '@libp2p/identify'
import { kadDHT, passthroughMapper } from '@libp2p/kad-dht'
import { mdns } from '@libp2p/mdns'
import { ping } from '@libp2p/ping'
import { preSharedKey } from '@libp2p/pnet'
import { tcp } from '@libp2p/tcp'
import { prometheusMetrics } from '@libp2p/prometheus-metrics'
import type { Registry } from 'prom-client'
import { LevelDatastore } from 'datastore-level'
import { MemoryDatastore, MountDatastore } from 'datastore-core'
import { Key } from 'interface-datastore'
import { createLibp2p, type Libp2p } from 'libp2p'
import { MANIFEST_PREFIX, trustedManifestSelector, trustedManifestValidator } from '../../protocol/index.js'
import type { GossipSub } from '@libp2p/gossipsub'
import type { RPC } from '@libp2p/gossipsub/message'
import type { Identify } from '@libp2p/identify'
import type { KadDHT } from '@libp2p/kad-dht'
import type { Ping } from '@libp2p/ping'
import type { PeerDiscovery, PeerId, PrivateKey } from '@libp2p/interface'
import type { Multiaddr } from '@multiformats/multiaddr'
import { logger } from '../log.js'
import { Problems, watchHandshakes } from './handshakes.js'

const log = logger('edge:agent:node')

/**
 * Gossipsub's fast message id: the publisher and its sequence number, as in the (signed) message
 * id, but read straight off the wire. Without one, gossipsub verifies the signature of every copy
 * of a message before it finds that it has seen it — in a flooded idle swarm most of what it
 * verified were duplicates. Ids enter the cache only once a message's signature checked, so a
 * forged copy cannot shadow the real one; a message lacking either field fails validation.
 */
export function fastMessageId (msg: RPC.Message): string {
  return `${Buffer.from(msg.from ?? []).toString('base64url')}/${Buffer.from(msg.seqno ?? []).toString('base64url')}`
}

export type EdgeServices = {
  identify: Identify
  ping: Ping
  pubsub: GossipSub
  dht: KadDHT
}

export type EdgeNode = Libp2p<EdgeServices>

export interface NodeInit {
  privateKey: PrivateKey
  swarmKey: Uint8Array
  listen: string[]
  announce: string[]
  bootstrap: string[]
  mdns: boolean
  /** Folder for the DHT's records and provider entries (survive restarts); the peer store is in memory. */
  datastorePath: string
  /** Whose signed manifests this node stores and accepts from the DHT. */
  trusts: (signer: string) => boolean
  /** Where failed handshakes are noted (a peer with another swarm key), for the log and `edge status`. */
  problems?: Problems
  /** The agent's Prometheus registry: libp2p's own metrics (connections, streams, gossipsub, kad-dht) go in it too. */
  metrics?: Registry
}

/**
 * Assembles the libp2p node: TCP + pnet + noise + yamux, identify, ping, gossipsub and kad-dht in
 * server mode. Tuned for small swarms and for testnets of many peers on one IP (see
 * ENVIRONMENT.md: every non-default value below was needed).
 */
export async function createNode (init: NodeInit): Promise<EdgeNode> {
  const level = new LevelDatastore(init.datastorePath)
  await level.open()
  // The peer store reads a record per peer for every DHT FIND_NODE it answers and is written at
  // every identify, tag and address change: on LevelDB, behind its locks, that took tens of ms per
  // answer and 5 % of an idle swarm's CPU. Peers are soft state (adverts, hellos and bootstrap
  // addresses rebuild them), so they live in memory; DHT records and providers stay on disk.
  const datastore = new MountDatastore([
    { prefix: new Key('/peers'), datastore: new MemoryDatastore() },
    { prefix: new Key('/'), datastore: level }
  ])
  const peerDiscovery: Array<(components: any) => PeerDiscovery> = []
  if (init.bootstrap.length > 0) peerDiscovery.push(bootstrap({ list: init.bootstrap, timeout: 100 }))
  if (init.mdns) peerDiscovery.push(mdns())
  const handshakes = watchHandshakes(preSharedKey({ psk: init.swarmKey }), noise(), init.problems ?? new Problems())
  const node = await createLibp2p({
    privateKey: init.privateKey,
    datastore,
    addresses: { listen: init.listen, announce: init.announce },
    transports: [tcp()],
    ...(init.metrics !== undefined ? { metrics: prometheusMetrics({ registry: init.metrics, collectDefaultMetrics: false }) } : {}),
    connectionProtector: handshakes.protector,
    connectionEncrypters: [handshakes.encrypter],
    // No yamux keep-alive pings: the connection monitor already pings every connection.
    streamMuxers: [yamux({ enableKeepAlive: false })],
    peerDiscovery,
    connectionManager: {
      maxConnections: 300,
      // Testnets start many agents on one IP at once; the default (~5/s per IP) resets them.
      inboundConnectionThreshold: 100,
      maxIncomingPendingConnections: 50,
      dialTimeout: 5000,
      // Peers of the swarm are tagged KEEP_ALIVE (connectivity.ts): a lost one is redialled for
      // about a minute (2, 4, 8, 16, 32 s), then it leaves the peer table.
      reconnectRetries: 5,
      reconnectRetryInterval: 2000,
      reconnectBackoffFactor: 2
    },
    // Liveness and RTT (tuning.ts). A connection whose pings fail is closed, after a generous
    // timeout, so that a peer at 100 % CPU is not dropped.
    connectionMonitor: { pingInterval: PING_INTERVAL_MS, abortConnectionOnPingFailure: true, pingTimeout: { minTimeout: 10_000, maxTimeout: 30_000 } },
    services: {
      identify: identify(),
      ping: ping({ maxInboundStreams: 8, maxOutboundStreams: 8, timeout: 5000 }),
      // Tuned for a few hundred peers (tuning.ts); no flood publishing (a publish goes to the mesh,
      // which also covers a small swarm whole). Adverts are sent on change with a slow heartbeat
      // (adverts.ts).
      pubsub: gossipsub({
        allowPublishToZeroTopicPeers: true,
        floodPublish: false,
        emitSelf: false,
        D: GOSSIP.D,
        Dlo: GOSSIP.Dlo,
        Dhi: GOSSIP.Dhi,
        Dlazy: GOSSIP.Dlazy,
        gossipFactor: GOSSIP.gossipFactor,
        heartbeatInterval: GOSSIP.heartbeatMs,
        fastMsgIdFn: fastMessageId,
        idontwantMinDataSize: GOSSIP.idontwantMinBytes,
        // Many peers on one IP (testnets) would otherwise be scored out of the mesh.
        scoreParams: { IPColocationFactorWeight: 0 }
      }),
      dht: kadDHT({
        clientMode: false,
        // kad-dht's defaults (10 disjoint paths of 10 peers in parallel each) ask every peer of a
        // small swarm at once, and each answer names up to 20 peers to merge into the peer store
        // and routing table: on 10 agents an answer took ~50 ms, where one asked alone took ~8.
        // Kademlia's classic α = 3 on one path: manifest look-ups 85 → ~50 ms p50 on 10 agents.
        alpha: 3,
        disjointPaths: 1,
        peerInfoMapper: passthroughMapper,
        protocol: '/edge/kad/1.0.0',
        validators: { [MANIFEST_PREFIX]: trustedManifestValidator(init.trusts) },
        selectors: { [MANIFEST_PREFIX]: trustedManifestSelector(init.trusts) }
      })
    }
  })
  stopClosestPeerTags(node.services.dht)
  filterPeersInAnswers(node.services.dht, node)
  return node
}

interface PeerInAnswer { id?: PeerId, multiaddrs?: Multiaddr[] }

interface DhtInternals {
  network?: { safeDispatchEvent?: (type: string, init: { detail?: PeerInAnswer }) => boolean }
  routingTable?: { addEventListener?: (type: string, fn: (evt: CustomEvent<PeerId>) => void) => void }
}

/**
 * kad-dht takes every peer named in an answer for a newly discovered one: a routing-table update
 * (a queued job with its own timers and signals) and a peer-store merge (a lock, a read, a
 * decode) each, and a peer not yet in the routing table is dialled and pinged before it is added.
 * In a small swarm every answer names the same peers, nearly all already in the routing table:
 * that was a quarter of a look-up's time (manifest look-ups on 10 agents 54–65 → 43–45 ms p50;
 * 28 ms once strangers were noted instead of dialled).
 * While a swarm forms, the pings were a third of its dials: 50 agents converged in 56–66 s on
 * 2.2–2.6 s of CPU each, 48–52 s on 1.9–2.0 s without them.
 *
 * Here a peer already in the routing table is passed over (its addresses come from identify and
 * adverts); one connected to this agent is taken as before; any other only has its addresses
 * noted in the peer store, so that a query that needs it can dial it — the routing table learns it
 * when it connects, as it learns every peer this agent connects to. Throws if this kad-dht lacks
 * either part, so that an upgrade that moves them is noticed.
 */
export function filterPeersInAnswers (dht: KadDHT, node: Pick<Libp2p, 'getConnections' | 'peerStore'>): void {
  const { network, routingTable } = dht as unknown as DhtInternals
  const dispatch = network?.safeDispatchEvent
  if (network === undefined || typeof dispatch !== 'function' || typeof routingTable?.addEventListener !== 'function') {
    throw new Error('this @libp2p/kad-dht has no network.safeDispatchEvent or routingTable events (agent/swarm/node.ts)')
  }
  const known = new Set<string>()
  routingTable.addEventListener('peer:add', (evt) => { known.add(evt.detail.toString()) })
  routingTable.addEventListener('peer:remove', (evt) => { known.delete(evt.detail.toString()) })
  network.safeDispatchEvent = (type, init) => {
    const peer = type === 'peer' ? init.detail : undefined
    if (peer?.id === undefined) return dispatch.call(network, type, init)
    if (known.has(peer.id.toString())) return true
    if (node.getConnections(peer.id).length > 0) return dispatch.call(network, type, init)
    const { id, multiaddrs = [] } = peer
    if (multiaddrs.length > 0) {
      node.peerStore.merge(id, { multiaddrs }).catch((err: Error) => { log('cannot note the addresses of %s: %s', id.toString(), err.message) })
    }
    return true
  }
}

/**
 * kad-dht tags the 20 peers closest to this one KEEP_ALIVE (its routing table's "closest peer
 * tagger", which its init cannot size), and libp2p then keeps a connection to each: in a swarm of
 * 30 that was 25–35 connections per agent, nearly everyone, whatever the overlay picks; in a
 * swarm of a thousand, 20 more than it needs. Here the overlay decides which connections are
 * kept (connectivity.ts); the DHT dials the peers a query needs, as it does any peer not among
 * its closest. The tagger is stopped before it first runs (5 s after start). Throws if this
 * kad-dht has no such tagger, so that an upgrade that moves it is noticed, not silently undone.
 */
export function stopClosestPeerTags (dht: KadDHT): void {
  const tagger = (dht as unknown as { routingTable?: { closestPeerTagger?: { stop?: () => void } } }).routingTable?.closestPeerTagger
  if (typeof tagger?.stop !== 'function') throw new Error('this @libp2p/kad-dht has no routingTable.closestPeerTagger to stop (agent/swarm/node.ts)')
  tagger.stop()
}
