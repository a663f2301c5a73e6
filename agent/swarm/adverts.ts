import { RPC } from '@libp2p/gossipsub/message'
import { peerIdFromPrivateKey, peerIdFromString } from '@libp2p/peer-id'
import { ADVERTS_TOPIC, decode, encode, InvalidMessageError, MAX_GOSSIP_BYTES, validateAdvert, verifies, type Advert, type SignedAdvert } from '../../protocol/index.js'
import { GossipTopic } from './gossip.js'
import type { EdgeNode } from './node.js'
import type { PeerTable } from './peer-table.js'
import type { Message } from '@libp2p/gossipsub'
import type { PeerId, PrivateKey } from '@libp2p/interface'

export interface AdvertServiceInit {
  /** An advert goes out at least this often, changed or not (the slow heartbeat). */
  heartbeatMs: number
  /** At most one advert per this long, however fast things change. Default: 500 ms. */
  minIntervalMs?: number
  /** A change of load alone (loadSignature) goes out no sooner than this after the last advert. Default: 5 s. */
  loadIntervalMs?: number
  /** Builds this agent's advert, without seq and sentAt. */
  snapshot: () => Omit<Advert, 'seq' | 'sentAt'>
  onAdvert?: (advert: Advert) => void
  /** The clock of the rate bound and of each advert's sentAt (integer ms). Default: Date.now. */
  now?: () => number
  /** Uniform in [0, 1): jitters each heartbeat by ±25 %, so that agents started together do not advertise in step. */
  random?: () => number
}

/** Where adverts go: a gossip topic (or, in tests, anything that takes them). */
export interface AdvertChannel {
  /** Resolves with whether any peer got it (false: nobody listened yet); void counts as heard. */
  publish: (advert: Advert) => Promise<boolean | void>
}

/** A gossiped advert, and the signed copy of it that can be passed on. */
export interface ReceivedAdvert {
  advert: Advert
  signed: SignedAdvert
}

/** Decodes and checks a gossiped advert: size, CBOR, schema, version, and that its signer is the peer it describes. */
export function parseAdvert (message: Message): ReceivedAdvert {
  const advert = validateAdvert(decode(message.data, MAX_GOSSIP_BYTES))
  if (message.type !== 'signed' || message.from.toString() !== advert.peerId) throw new InvalidMessageError('advert not signed by the peer it describes')
  return { advert, signed: { data: message.data, seqno: seqnoBytes(message.sequenceNumber), signature: message.signature } }
}

/** A gossipsub sequence number as it goes on the wire: 8 bytes, big-endian. */
function seqnoBytes (n: bigint): Uint8Array {
  const bytes = new Uint8Array(8)
  new DataView(bytes.buffer).setBigUint64(0, n, false)
  return bytes
}

const SIGN_PREFIX = new TextEncoder().encode('libp2p-pubsub:')

/** What gossipsub signs: "libp2p-pubsub:" and the message (publisher, data, seqno, topic) without signature. */
function signedBytes (author: PeerId, data: Uint8Array, seqno: Uint8Array): Uint8Array {
  const body = RPC.Message.encode({ from: author.toMultihash().bytes, data, seqno, topic: ADVERTS_TOPIC })
  const bytes = new Uint8Array(SIGN_PREFIX.byteLength + body.byteLength)
  bytes.set(SIGN_PREFIX)
  bytes.set(body, SIGN_PREFIX.byteLength)
  return bytes
}

/**
 * Checks an advert another agent passed on: the bytes its author published, signed by the
 * author's key as gossipsub signs, by the peer the advert describes. Throws when any of it does
 * not hold. With `wanted`, an advert it refuses (one the receiver has already) is returned as
 * undefined, decoded but unchecked: a signature check costs ten times the decoding.
 */
export async function openSignedAdvert (signed: SignedAdvert, wanted?: (advert: Advert) => boolean): Promise<Advert | undefined> {
  const advert = validateAdvert(decode(signed.data, MAX_GOSSIP_BYTES))
  if (wanted !== undefined && !wanted(advert)) return undefined
  let author: PeerId
  try {
    author = peerIdFromString(advert.peerId)
  } catch (err) {
    throw new InvalidMessageError('advert of a peer id that does not parse', { cause: err })
  }
  if (author.publicKey === undefined) throw new InvalidMessageError('advert of a peer whose id carries no key')
  if (signed.seqno.byteLength !== 8) throw new InvalidMessageError('bad sequence number')
  if (!await verifies(author.publicKey, signedBytes(author, signed.data, signed.seqno), signed.signature)) throw new InvalidMessageError(`advert of ${advert.peerId} with a bad signature`)
  return advert
}

/**
 * Signs this agent's advert as gossipsub would have published it (its seq as the sequence
 * number), so that a hello's own advert can be passed on like a gossiped one: a swarm starting,
 * whose agents have not gossiped yet, still fills a newcomer's table in one hello.
 */
export async function signAdvert (advert: Advert, key: PrivateKey): Promise<SignedAdvert> {
  const data = encode(advert)
  const seqno = seqnoBytes(BigInt(advert.seq))
  return { data, seqno, signature: await key.sign(signedBytes(peerIdFromPrivateKey(key), data, seqno)) }
}

/**
 * What in an advert the swarm must hear soon (its standing): holdings, addresses, labels, slots,
 * trust, peers watched go. A change goes out at the next tick.
 */
export function standingSignature (a: Omit<Advert, 'seq' | 'sentAt'>): string {
  return JSON.stringify([a.runtimes.map(r => `${r.kind}:${r.slots}`), a.functions.map(f => f.sha256 + f.version), a.addrs, a.labels, a.trusted ?? [], a.arch, a.lost ?? []])
}

/**
 * Load by the step (idle, a quarter busy, …, full; a queue or none) and warm code. A change goes
 * out, but no sooner than `loadIntervalMs` after the last advert: callers count their own calls
 * exactly and every answer carries the callee's load, so adverts only need to say roughly how busy
 * an agent is — and load that flips with every call, advertised at once, is O(N) messages per flip
 * (a burst of first calls after a deploy was 2.7 adverts per agent, each to every agent). Exact
 * busy counts ride along.
 */
export function loadSignature (a: Omit<Advert, 'seq' | 'sentAt'>): string {
  const load = a.runtimes.map(r => {
    const free = Math.max(0, r.slots - r.busy)
    const step = free === 0 ? 'full' : `${Math.ceil(4 * r.busy / Math.max(1, r.slots))}/4`
    return `${r.kind}:${step}`
  })
  return JSON.stringify([load, a.queue > 0, a.warm])
}

/**
 * Publishes this agent's advert on `edge/adverts/1` when its standing changes (standingSignature),
 * when its load changes by a step (loadSignature, at most once per `loadIntervalMs`), soon after a
 * new peer appears (so that it learns of this agent without waiting for a heartbeat), and otherwise
 * every `heartbeatMs` — never more than once per `minIntervalMs`. An idle swarm of N then sends N
 * adverts per heartbeat, not N per second. Peers' adverts become peer-table entries.
 */
export class AdvertService {
  readonly #init: Required<Omit<AdvertServiceInit, 'onAdvert'>> & Pick<AdvertServiceInit, 'onAdvert'>
  readonly #channel: AdvertChannel
  readonly #table: PeerTable
  readonly #selfId: string
  #seq = 0
  #timer: NodeJS.Timeout | undefined
  #lastSentAt = Number.NEGATIVE_INFINITY
  #lastStanding = ''
  #lastLoad = ''
  #soon = false
  /** The last advert reached no peer: the next peer that listens gets one at once. */
  #unheard = false
  #sent = 0
  #heartbeatMs: number

  constructor (channel: AdvertChannel, table: PeerTable, selfId: string, init: AdvertServiceInit) {
    this.#channel = channel
    this.#table = table
    this.#selfId = selfId
    this.#init = { minIntervalMs: 500, loadIntervalMs: 5000, now: Date.now, random: Math.random, ...init }
    this.#heartbeatMs = this.#jittered()
  }

  #jittered (): number {
    return this.#init.heartbeatMs * (0.75 + 0.5 * this.#init.random())
  }

  /** Adverts this agent has sent. */
  get sent (): number {
    return this.#sent
  }

  start (): void {
    this.#timer = setInterval(() => { void this.tick() }, this.#init.minIntervalMs)
    this.#timer.unref()
    void this.tick()
  }

  stop (): void {
    clearInterval(this.#timer)
  }

  /** This agent's advert as of now, for a hello (its own seq: a receiver takes the newest). */
  current (): Advert {
    return { ...this.#init.snapshot(), seq: this.#seq++, sentAt: this.#init.now() }
  }

  /**
   * A peer's advert, from gossip (with its signed copy, to pass on in hellos), a hello, or passed on
   * by another. A new peer does not make this agent advertise: it learns of this agent from the
   * signed copies its neighbours hold (hello.ts) — every agent answering every join was N adverts
   * per join, N² for a swarm starting.
   */
  receive (advert: Advert, signed?: SignedAdvert, ageMs = 0): void {
    if (advert.peerId === this.#selfId) return
    if (!this.#table.upsert(advert, signed, ageMs)) return
    this.#init.onAdvert?.(advert)
  }

  /**
   * A peer began to listen to adverts (it subscribed, or joined this agent's mesh): if it is not in
   * the table yet, it has likely missed this agent's adverts, so one goes out at the next tick;
   * likewise if this agent's last advert reached nobody (the first, sent as it started, before it
   * had peers: the swarm beyond its first neighbours would otherwise hear of it a heartbeat later).
   */
  peerListening (peerId: string): void {
    if (peerId !== this.#selfId && (this.#unheard || this.#table.get(peerId) === undefined)) this.#soon = true
  }

  /**
   * Holdings changed (a deploy, a delete): an advert now, past the rate bound — a caller that
   * deployed and at once invokes elsewhere must find the holder (deploys are rare; load is not).
   */
  publishSoon (): void {
    void this.tick(true)
  }

  /** Publishes if the standing changed, the load changed and may go, a peer is new, or the heartbeat is due, and the rate allows (or `now`). */
  async tick (force = false): Promise<boolean> {
    const now = this.#init.now()
    const since = now - this.#lastSentAt
    if (!force && since < this.#init.minIntervalMs) return false
    const snapshot = this.#init.snapshot()
    const standing = standingSignature(snapshot)
    const load = loadSignature(snapshot)
    const due = since >= this.#heartbeatMs || (load !== this.#lastLoad && since >= this.#init.loadIntervalMs)
    if (!force && !due && !this.#soon && standing === this.#lastStanding) return false
    this.#soon = false
    this.#lastStanding = standing
    this.#lastLoad = load
    this.#lastSentAt = now
    this.#heartbeatMs = this.#jittered()
    this.#sent++
    this.#unheard = await this.#channel.publish({ ...snapshot, seq: this.#seq++, sentAt: now }) === false
    return true
  }
}

/**
 * The adverts topic of a libp2p node, delivering peers' adverts to `receive`, and telling
 * `listening` of each peer that subscribes to it or joins this node's mesh for it.
 */
export function advertTopic (node: EdgeNode, receive: (received: ReceivedAdvert) => void, listening: (peerId: string) => void, flood: () => boolean): GossipTopic<ReceivedAdvert> {
  const pubsub = node.services.pubsub
  pubsub.addEventListener('subscription-change', (evt) => {
    if (evt.detail.subscriptions.some(s => s.topic === ADVERTS_TOPIC && s.subscribe)) listening(evt.detail.peerId.toString())
  })
  pubsub.addEventListener('gossipsub:graft', (evt) => {
    if (evt.detail.topic === ADVERTS_TOPIC) listening(evt.detail.peerId)
  })
  return new GossipTopic(node, ADVERTS_TOPIC, parseAdvert, receive, flood)
}

/** Up to this many peers, adverts are flooded to every connected peer; beyond, they go by the mesh. */
export const FLOOD_ADVERTS_UP_TO = 24
