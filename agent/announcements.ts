import { logger } from '@libp2p/logger'
import { TopicValidatorResult, type Message } from '@libp2p/gossipsub'
import { decode, encode, FUNCTIONS_TOPIC, MAX_GOSSIP_BYTES, validateAnnouncement, type FunctionAnnouncement } from '../protocol/index.js'
import type { EdgeNode } from './node.js'

const log = logger('edge:agent:announcements')

/** Decodes and checks an announcement, and that it is signed by the peer it names. */
export function parseAnnouncement (message: Message): FunctionAnnouncement {
  if (message.type !== 'signed') throw new Error('unsigned announcement')
  const announcement = validateAnnouncement(decode(message.data, MAX_GOSSIP_BYTES))
  const claimed = announcement.type === 'deploy' ? announcement.holder : announcement.by
  if (claimed !== message.from.toString()) throw new Error('announcement not signed by the peer it names')
  return announcement
}

/**
 * Deploy and delete announcements on `edge/functions/1`, so that peers learn of a function (and
 * its limits) without waiting for adverts. Soft state: authority moves to signed DHT manifests later.
 * Checked in gossipsub's topic validator, like adverts.
 */
export class AnnouncementService {
  readonly #node: EdgeNode
  readonly #onAnnouncement: (a: FunctionAnnouncement) => void
  readonly #parsed = new WeakMap<Message, FunctionAnnouncement>()
  #dropped = 0
  readonly #onMessage = (evt: CustomEvent<Message>): void => { this.#receive(evt.detail) }

  constructor (node: EdgeNode, onAnnouncement: (a: FunctionAnnouncement) => void) {
    this.#node = node
    this.#onAnnouncement = onAnnouncement
  }

  get dropped (): number {
    return this.#dropped
  }

  start (): void {
    const pubsub = this.#node.services.pubsub
    pubsub.topicValidators.set(FUNCTIONS_TOPIC, (_from, message) => this.#validate(message))
    pubsub.addEventListener('message', this.#onMessage)
    pubsub.subscribe(FUNCTIONS_TOPIC)
  }

  stop (): void {
    const pubsub = this.#node.services.pubsub
    pubsub.removeEventListener('message', this.#onMessage)
    pubsub.unsubscribe(FUNCTIONS_TOPIC)
    pubsub.topicValidators.delete(FUNCTIONS_TOPIC)
  }

  async announce (announcement: FunctionAnnouncement): Promise<void> {
    try {
      await this.#node.services.pubsub.publish(FUNCTIONS_TOPIC, encode(announcement))
    } catch (err) {
      log('announcement not published: %s', (err as Error).message)
    }
  }

  #validate (message: Message): TopicValidatorResult {
    try {
      this.#parsed.set(message, parseAnnouncement(message))
      return TopicValidatorResult.Accept
    } catch (err) {
      this.#dropped++
      log('dropped announcement: %s', (err as Error).message)
      return TopicValidatorResult.Reject
    }
  }

  #receive (message: Message): void {
    if (message.topic !== FUNCTIONS_TOPIC) return
    const announcement = this.#parsed.get(message)
    if (announcement !== undefined) this.#onAnnouncement(announcement)
  }
}
