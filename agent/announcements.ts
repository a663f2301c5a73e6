import { logger } from '@libp2p/logger'
import { decode, encode, FUNCTIONS_TOPIC, MAX_GOSSIP_BYTES, validateAnnouncement, type FunctionAnnouncement } from '../protocol/index.js'
import type { EdgeNode } from './node.js'
import type { Message } from '@libp2p/gossipsub'

const log = logger('edge:agent:announcements')

/**
 * Deploy and delete announcements on `edge/functions/1`, so that peers learn of a function (and
 * its limits) without waiting for adverts. Soft state: authority moves to signed DHT manifests later.
 */
export class AnnouncementService {
  readonly #node: EdgeNode
  readonly #onAnnouncement: (a: FunctionAnnouncement, from: string) => void
  #dropped = 0
  readonly #onMessage = (evt: CustomEvent<Message>): void => { this.#receive(evt.detail) }

  constructor (node: EdgeNode, onAnnouncement: (a: FunctionAnnouncement, from: string) => void) {
    this.#node = node
    this.#onAnnouncement = onAnnouncement
  }

  get dropped (): number {
    return this.#dropped
  }

  start (): void {
    this.#node.services.pubsub.addEventListener('message', this.#onMessage)
    this.#node.services.pubsub.subscribe(FUNCTIONS_TOPIC)
  }

  stop (): void {
    this.#node.services.pubsub.removeEventListener('message', this.#onMessage)
    this.#node.services.pubsub.unsubscribe(FUNCTIONS_TOPIC)
  }

  async announce (announcement: FunctionAnnouncement): Promise<void> {
    try {
      await this.#node.services.pubsub.publish(FUNCTIONS_TOPIC, encode(announcement))
    } catch (err) {
      log('announcement not published: %s', (err as Error).message)
    }
  }

  #receive (message: Message): void {
    if (message.topic !== FUNCTIONS_TOPIC) return
    try {
      if (message.type !== 'signed') throw new Error('unsigned announcement')
      const announcement = validateAnnouncement(decode(message.data, MAX_GOSSIP_BYTES))
      const from = message.from.toString()
      const claimed = announcement.type === 'deploy' ? announcement.holder : announcement.by
      if (claimed !== from) throw new Error('announcement not signed by the peer it names')
      this.#onAnnouncement(announcement, from)
    } catch (err) {
      this.#dropped++
      log('dropped announcement: %s', (err as Error).message)
    }
  }
}
