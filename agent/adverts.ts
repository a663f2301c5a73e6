import { logger } from '@libp2p/logger'
import { ADVERTS_TOPIC, decode, encode, MAX_GOSSIP_BYTES, validateAdvert, type Advert } from '../protocol/index.js'
import type { EdgeNode } from './node.js'
import type { PeerTable } from './peer-table.js'
import type { Message } from '@libp2p/gossipsub'

const log = logger('edge:agent:adverts')

export interface AdvertServiceInit {
  intervalMs: number
  /** Builds this agent's advert, without seq and sentAt. */
  snapshot: () => Omit<Advert, 'seq' | 'sentAt'>
  onAdvert?: (advert: Advert) => void
}

/**
 * Publishes this agent's advert on `edge/adverts/1` about once a second and turns peers' adverts
 * into peer-table entries. Oversize, malformed, wrong-version or spoofed adverts are dropped.
 */
export class AdvertService {
  readonly #node: EdgeNode
  readonly #table: PeerTable
  readonly #init: AdvertServiceInit
  #seq = 0
  #timer: NodeJS.Timeout | undefined
  #dropped = 0
  readonly #onMessage = (evt: CustomEvent<Message>): void => { this.#receive(evt.detail) }

  constructor (node: EdgeNode, table: PeerTable, init: AdvertServiceInit) {
    this.#node = node
    this.#table = table
    this.#init = init
  }

  get dropped (): number {
    return this.#dropped
  }

  start (): void {
    this.#node.services.pubsub.addEventListener('message', this.#onMessage)
    this.#node.services.pubsub.subscribe(ADVERTS_TOPIC)
    this.#timer = setInterval(() => { void this.publish() }, this.#init.intervalMs)
    this.#timer.unref()
    void this.publish()
  }

  stop (): void {
    clearInterval(this.#timer)
    this.#node.services.pubsub.removeEventListener('message', this.#onMessage)
    this.#node.services.pubsub.unsubscribe(ADVERTS_TOPIC)
  }

  async publish (): Promise<void> {
    const advert: Advert = { ...this.#init.snapshot(), seq: this.#seq++, sentAt: Date.now() }
    const data = encode(advert)
    if (data.byteLength > MAX_GOSSIP_BYTES) {
      log.error('own advert is %d bytes, over the %d limit: not sent', data.byteLength, MAX_GOSSIP_BYTES)
      return
    }
    try {
      await this.#node.services.pubsub.publish(ADVERTS_TOPIC, data)
    } catch (err) {
      log('advert not published: %s', (err as Error).message)
    }
  }

  #receive (message: Message): void {
    if (message.topic !== ADVERTS_TOPIC) return
    try {
      const advert = validateAdvert(decode(message.data, MAX_GOSSIP_BYTES))
      if (message.type !== 'signed' || message.from.toString() !== advert.peerId) throw new Error('advert not signed by the peer it describes')
      if (advert.peerId === this.#node.peerId.toString()) return
      if (this.#table.upsert(advert)) this.#init.onAdvert?.(advert)
    } catch (err) {
      this.#dropped++
      log('dropped advert: %s', (err as Error).message)
    }
  }
}
