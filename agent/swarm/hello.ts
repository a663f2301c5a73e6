import { logger } from '@libp2p/logger'
import { setMaxListeners } from 'node:events'
import { FramedStream, HELLO_PROTOCOL, MAX_HELLO_BYTES, MAX_HELLO_PEERS, validateHello, WIRE_VERSION, type Advert, type Hello } from '../../protocol/index.js'
import { deadline } from '../deadline.js'
import type { EdgeNode } from './node.js'
import type { Connection, Stream } from '@libp2p/interface'

const log = logger('edge:agent:hello')

const HELLO_DEADLINE_MS = 10_000

export interface HelloInit {
  /** This agent's advert as of now. */
  advert: () => Advert
  /** The peers this agent knows, to hint to the other side. */
  peers: () => Array<{ peerId: string, addrs: string[] }>
  /** A peer's advert, authenticated by the connection it came on. */
  receive: (advert: Advert) => void
  /** Peers the other side knows of: candidates to dial. */
  hints: (peers: Array<{ peerId: string, addrs: string[] }>) => void
}

/**
 * `/edge/hello/1`: when a connection opens, its dialer sends a hello (its advert, and the peers it
 * knows) and the other side answers with its own. Each side so learns of the other at once, not at
 * its next advert, and of the whole swarm through the hints: a new agent that dials one bootstrap
 * peer dials the others from its hints, and every one of them hears of it by the hello. Gossip is
 * not needed for a join, which matters on a loaded machine where a newcomer's gossip mesh takes
 * many heartbeats to form. An advert counts only if its peerId is the connection's remote peer.
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

  #hello (): Hello {
    return { v: WIRE_VERSION, type: 'hello', advert: this.#init.advert(), peers: this.#init.peers().slice(0, MAX_HELLO_PEERS).map(p => ({ peerId: p.peerId, addrs: p.addrs.slice(0, 16) })) }
  }

  /** Takes a hello from `from`; false (and nothing taken) when it is not valid or not from that peer. */
  #take (message: unknown, from: string): boolean {
    let hello: Hello
    try {
      hello = validateHello(message)
    } catch (err) {
      log('bad hello from %s: %s', from, (err as Error).message)
      return false
    }
    if (hello.advert.peerId !== from) {
      log('hello from %s carries the advert of %s: ignored', from, hello.advert.peerId)
      return false
    }
    this.#init.receive(hello.advert)
    this.#init.hints(hello.peers.filter(p => p.peerId !== from))
    return true
  }

  async #greet (connection: Connection): Promise<void> {
    const from = connection.remotePeer.toString()
    const { signal, done } = deadline(this.#controller.signal, HELLO_DEADLINE_MS)
    let stream: Stream | undefined
    try {
      stream = await connection.newStream(HELLO_PROTOCOL, { signal })
      const { framed, first } = framedOnce(stream, signal)
      await framed.write(this.#hello(), { signal })
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
      const { framed, first } = framedOnce(stream, signal)
      if (!this.#take(await first, from)) { stream.abort(new Error('bad hello')); return }
      await framed.write(this.#hello(), { signal })
      await framed.close({ signal })
    } catch (err) {
      log('hello from %s failed: %s', from, (err as Error).message)
      stream.abort(err as Error)
    } finally {
      done()
    }
  }
}

/**
 * A framed stream and its first message: resolves with it, rejects when the stream closes first
 * or `signal` aborts. (A failure before anyone awaits `first` is not unhandled.)
 */
function framedOnce (stream: Stream, signal: AbortSignal): { framed: FramedStream, first: Promise<unknown> } {
  let onAbort: () => void = () => {}
  let framed!: FramedStream
  const first = new Promise<unknown>((resolve, reject) => {
    onAbort = () => { reject(new Error('no hello before the deadline')) }
    signal.addEventListener('abort', onAbort, { once: true })
    framed = new FramedStream(stream, {
      maxFrameBytes: MAX_HELLO_BYTES,
      onMessage: (m) => { resolve(m) },
      onClose: (err) => { reject(err ?? new Error('stream closed before a hello')) }
    })
  }).finally(() => { signal.removeEventListener('abort', onAbort) })
  first.catch(() => {})
  return { framed, first }
}
