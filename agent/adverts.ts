import { logger } from '@libp2p/logger'
import { TopicValidatorResult, type Message } from '@libp2p/gossipsub'
import { ADVERTS_TOPIC, decode, encode, MAX_GOSSIP_BYTES, validateAdvert, type Advert } from '../protocol/index.js'
import type { EdgeNode } from './node.js'
import type { PeerTable } from './peer-table.js'

const log = logger('edge:agent:adverts')

export interface AdvertServiceInit {
  intervalMs: number
  /** Builds this agent's advert, without seq and sentAt. */
  snapshot: () => Omit<Advert, 'seq' | 'sentAt'>
  onAdvert?: (advert: Advert) => void
}

/** Decodes and checks a gossiped advert: size, CBOR, schema, version, and that its signer is the peer it describes. */
export function parseAdvert (message: Message): Advert {
  const advert = validateAdvert(decode(message.data, MAX_GOSSIP_BYTES))
  if (message.type !== 'signed' || message.from.toString() !== advert.peerId) throw new Error('advert not signed by the peer it describes')
  return advert
}

/**
 * Publishes this agent's advert on `edge/adverts/1` about once a second and turns peers' adverts
 * into peer-table entries. Adverts are checked in gossipsub's topic validator, so that oversize,
 * malformed, wrong-version or spoofed ones are neither delivered nor forwarded, and their sender
 * loses score.
 */
export class AdvertService {
  readonly #node: EdgeNode
  readonly #table: PeerTable
  readonly #init: AdvertServiceInit
  readonly #parsed = new WeakMap<Message, Advert>()
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
    const pubsub = this.#node.services.pubsub
    pubsub.topicValidators.set(ADVERTS_TOPIC, (_from, message) => this.#validate(message))
    pubsub.addEventListener('message', this.#onMessage)
    pubsub.subscribe(ADVERTS_TOPIC)
    this.#timer = setInterval(() => { void this.publish() }, this.#init.intervalMs)
    this.#timer.unref()
    void this.publish()
  }

  stop (): void {
    clearInterval(this.#timer)
    const pubsub = this.#node.services.pubsub
    pubsub.removeEventListener('message', this.#onMessage)
    pubsub.unsubscribe(ADVERTS_TOPIC)
    pubsub.topicValidators.delete(ADVERTS_TOPIC)
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

  #validate (message: Message): TopicValidatorResult {
    try {
      this.#parsed.set(message, parseAdvert(message))
      return TopicValidatorResult.Accept
    } catch (err) {
      this.#dropped++
      log('dropped advert: %s', (err as Error).message)
      return TopicValidatorResult.Reject
    }
  }

  #receive (message: Message): void {
    if (message.topic !== ADVERTS_TOPIC) return
    const advert = this.#parsed.get(message)
    if (advert === undefined || advert.peerId === this.#node.peerId.toString()) return
    if (this.#table.upsert(advert)) this.#init.onAdvert?.(advert)
  }
}
