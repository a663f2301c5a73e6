import { logger } from '../log.js'
import { setMaxListeners } from 'node:events'
import { framedOnce, HELLO_PROTOCOL, MAX_HELLO_BYTES, MAX_HELLO_PEERS, MAX_HELLO_RELAY_BYTES, MAX_HELLO_RELAYS, validateHello, WIRE_VERSION, type Advert, type Hello, type SignedAdvert } from '../../protocol/index.js'
import { openSignedAdvert } from './adverts.js'
import { deadline } from '../deadline.js'
import type { EdgeNode } from './node.js'
import type { Connection, Stream } from '@libp2p/interface'

const log = logger('edge:agent:hello')

const HELLO_DEADLINE_MS = 10_000

export interface HelloInit {
  /** This agent's advert as of now. */
  advert: () => Advert
  /** Signs this agent's advert as gossip would (adverts.ts `signAdvert`), so that the other side can pass it on. */
  sign: (advert: Advert) => Promise<SignedAdvert>
  /** The peers this agent knows, to hint to the other side. */
  peers: () => Array<{ peerId: string, addrs: string[] }>
  /** Others' adverts as they signed them (the peer table's), to pass on. */
  signed: (max: number) => SignedAdvert[]
  /** Whether this agent has the peer in its table (then, dialling it, it sends no others' adverts). */
  knows: (peerId: string) => boolean
  /** How many peers this agent's table holds. */
  known: () => number
  /**
   * A peer's advert: the remote's own (authenticated by the connection it came on), or one it
   * passed on (`signed`, checked against its author's key; `ageMs` old by its author's clock).
   */
  receive: (advert: Advert, signed?: SignedAdvert, ageMs?: number) => void
  /** Whether a passed-on advert, `ageMs` old, would change what `receive` holds (if not, its signature is not checked). */
  isNews: (advert: Advert, ageMs: number) => boolean
  /** Peers the other side knows of: candidates to dial. */
  hints: (peers: Array<{ peerId: string, addrs: string[] }>) => void
  /** The roster of this agent's owner's devices as this agent holds it (signed), to pass on. */
  roster?: () => Uint8Array | undefined
  /** A roster the other side holds: taken when it is this agent's owner's and newer. */
  takeRoster?: (record: Uint8Array, from: string) => void
}

/**
 * `/edge/hello/1`: when a connection opens, its dialer sends a hello (its advert, the peers it
 * knows, and the signed adverts it holds of them) and the other side answers with its own. Each
 * side so learns of the other at once, and of the whole swarm from the signed copies: a new agent
 * that dials one bootstrap peer has every peer's advert in one round trip, without dialling them
 * and without anyone advertising again for it; the swarm learns of it from its first advert.
 * The remote's own advert counts only if its peerId is the connection's remote peer; a passed-on
 * one only if its author's signature checks.
 */
export class HelloService {
  readonly #node: EdgeNode
  readonly #init: HelloInit
  #controller = new AbortController()
  readonly #onOpen = (evt: CustomEvent<Connection>): void => {
    if (evt.detail.direction === 'outbound') void this.#greet(evt.detail)
  }

  constructor (node: EdgeNode, init: HelloInit) {
    this.#node = node
    this.#init = init
  }

  async start (): Promise<void> {
    this.#controller = new AbortController()
    setMaxListeners(Infinity, this.#controller.signal)
    await this.#node.handle(HELLO_PROTOCOL, (stream, connection) => { void this.#answer(stream, connection) }, { maxInboundStreams: 16, maxOutboundStreams: 16 })
    this.#node.addEventListener('connection:open', this.#onOpen)
  }

  async stop (): Promise<void> {
    this.#controller.abort()
    this.#node.removeEventListener('connection:open', this.#onOpen)
    await this.#node.unhandle(HELLO_PROTOCOL)
  }

  /**
   * This agent's hello, with others' signed adverts or not. A connection opened for a call or a DHT
   * query between agents of a converged swarm carried every advert both ways; now the dialer
   * passes them on only to a peer it does not know (a newcomer), and the answer only to a dialer
   * it did not know or that knows fewer peers than the answerer (a newcomer, an agent restarted
   * with an empty table).
   */
  async #hello (withRelays: boolean): Promise<Hello> {
    const advert = this.#init.advert()
    const own = await this.#init.sign(advert)
    const relays: SignedAdvert[] = [own]
    let bytes = own.data.byteLength
    for (const r of withRelays ? this.#init.signed(MAX_HELLO_RELAYS - 1) : []) {
      if (bytes + r.data.byteLength > MAX_HELLO_RELAY_BYTES) break
      bytes += r.data.byteLength
      relays.push(r)
    }
    const roster = this.#init.roster?.()
    return { v: WIRE_VERSION, type: 'hello', advert, peers: this.#init.peers().slice(0, MAX_HELLO_PEERS).map(p => ({ peerId: p.peerId, addrs: p.addrs.slice(0, 16) })), relays, knows: this.#init.known(), ...(roster !== undefined ? { roster } : {}) }
  }

  /** Takes a hello from `from`; undefined (and nothing taken) when it is not valid or not from that peer. */
  #take (message: unknown, from: string): Hello | undefined {
    let hello: Hello
    try {
      hello = validateHello(message)
    } catch (err) {
      log('bad hello from %s: %s', from, (err as Error).message)
      return undefined
    }
    if (hello.advert.peerId !== from) {
      log('hello from %s carries the advert of %s: ignored', from, hello.advert.peerId)
      return undefined
    }
    this.#init.receive(hello.advert)
    if (hello.roster !== undefined) this.#init.takeRoster?.(hello.roster, from)
    // Hints once the signed adverts are in the table: a peer whose advert came along needs no dial
    // (a newcomer dialled up to five hinted peers at once, then its overlay picked others).
    const hinted = hello.peers.filter(p => p.peerId !== from)
    void this.#takeRelays(hello.relays ?? [], from).finally(() => { this.#init.hints(hinted) })
    return hello
  }

  /** Checks and takes the signed adverts a peer passed on; a bad one is skipped (and logged), not fatal. */
  async #takeRelays (relays: SignedAdvert[], from: string): Promise<void> {
    let bad = 0
    // The remote's own (signed copy of the advert it sent) has no age; others' are as old as their author says.
    const ageOf = (advert: Advert): number => advert.peerId === from ? 0 : Date.now() - advert.sentAt
    for (const signed of relays) {
      try {
        const advert = await openSignedAdvert(signed, (a) => this.#init.isNews(a, ageOf(a)))
        if (advert !== undefined) this.#init.receive(advert, signed, ageOf(advert))
      } catch (err) {
        bad++
        log('a signed advert from %s does not check: %s', from, (err as Error).message)
      }
    }
    if (bad > 0) log('%s passed on %d adverts that do not check', from, bad)
  }

  async #greet (connection: Connection): Promise<void> {
    const from = connection.remotePeer.toString()
    const { signal, done } = deadline(this.#controller.signal, HELLO_DEADLINE_MS)
    let stream: Stream | undefined
    try {
      stream = await connection.newStream(HELLO_PROTOCOL, { signal })
      const { framed, first } = framedOnce(stream, MAX_HELLO_BYTES, signal)
      await framed.write(await this.#hello(!this.#init.knows(from)), { signal })
      const answer = await first
      await framed.close({ signal })
      this.#take(answer, from)
    } catch (err) {
      log('no hello with %s: %s', from, (err as Error).message)
      stream?.abort(err as Error)
    } finally {
      done()
    }
  }

  async #answer (stream: Stream, connection: Connection): Promise<void> {
    const from = connection.remotePeer.toString()
    const { signal, done } = deadline(this.#controller.signal, HELLO_DEADLINE_MS)
    try {
      const { framed, first } = framedOnce(stream, MAX_HELLO_BYTES, signal)
      const message = await first
      const stranger = !this.#init.knows(from)
      const hello = this.#take(message, from)
      if (hello === undefined) { stream.abort(new Error('bad hello')); return }
      // A stranger (a newcomer, or the other side of a healed partition) may know other peers; an
      // older agent says nothing of what it knows. Both get them all.
      await framed.write(await this.#hello(stranger || (hello.knows ?? 0) < this.#init.known()), { signal })
      await framed.close({ signal })
    } catch (err) {
      log('hello from %s failed: %s', from, (err as Error).message)
      stream.abort(err as Error)
    } finally {
      done()
    }
  }
}
