import { ADVERTS_TOPIC, decode, MAX_GOSSIP_BYTES, validateAdvert, type Advert } from '../protocol/index.js'
import { GossipTopic } from './gossip.js'
import type { EdgeNode } from './node.js'
import type { PeerTable } from './peer-table.js'
import type { Message } from '@libp2p/gossipsub'

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
 * into peer-table entries.
 */
export class AdvertService {
  readonly #node: EdgeNode
  readonly #init: AdvertServiceInit
  readonly #topic: GossipTopic<Advert>
  #seq = 0
  #timer: NodeJS.Timeout | undefined

  constructor (node: EdgeNode, table: PeerTable, init: AdvertServiceInit) {
    this.#node = node
    this.#init = init
    this.#topic = new GossipTopic(node, ADVERTS_TOPIC, parseAdvert, (advert) => {
      if (advert.peerId === this.#node.peerId.toString()) return
      if (table.upsert(advert)) this.#init.onAdvert?.(advert)
    })
  }

  get dropped (): number {
    return this.#topic.dropped
  }

  start (): void {
    this.#topic.start()
    this.#timer = setInterval(() => { void this.publish() }, this.#init.intervalMs)
    this.#timer.unref()
    void this.publish()
  }

  stop (): void {
    clearInterval(this.#timer)
    this.#topic.stop()
  }

  async publish (): Promise<void> {
    await this.#topic.publish({ ...this.#init.snapshot(), seq: this.#seq++, sentAt: Date.now() })
  }
}
