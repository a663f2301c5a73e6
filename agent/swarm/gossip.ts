import { logger } from '../log.js'
import { TopicValidatorResult, type Message } from '@libp2p/gossipsub'
import { encode, MAX_GOSSIP_BYTES } from '../../protocol/index.js'
import type { EdgeNode } from './node.js'

const log = logger('edge:agent:gossip')

/**
 * One gossipsub topic whose messages are checked in gossipsub's topic validator: a message that
 * `parse` refuses (oversize, malformed, wrong version, spoofed) is neither delivered nor forwarded,
 * and its sender loses score. Soft state only; requests never travel here.
 */
export class GossipTopic<T> {
  readonly #node: EdgeNode
  readonly #topic: string
  readonly #parse: (message: Message) => T
  readonly #deliver: (value: T) => void
  readonly #flood: () => boolean
  readonly #parsed = new WeakMap<Message, T>()
  #dropped = 0
  readonly #onMessage = (evt: CustomEvent<Message>): void => {
    if (evt.detail.topic !== this.#topic) return
    const value = this.#parsed.get(evt.detail)
    if (value !== undefined) this.#deliver(value)
  }

  /**
   * `flood`: whether this agent's own messages go to every subscribed peer it is connected to
   * rather than only to its mesh (asked at each publish: rare messages that must reach everyone
   * fast, or a small swarm).
   */
  constructor (node: EdgeNode, topic: string, parse: (message: Message) => T, deliver: (value: T) => void, flood: () => boolean = () => false) {
    this.#node = node
    this.#topic = topic
    this.#parse = parse
    this.#deliver = deliver
    this.#flood = flood
  }

  /** Messages refused so far. */
  get dropped (): number {
    return this.#dropped
  }

  start (): void {
    const pubsub = this.#node.services.pubsub
    pubsub.topicValidators.set(this.#topic, (_from, message) => this.#validate(message))
    pubsub.addEventListener('message', this.#onMessage)
    pubsub.subscribe(this.#topic)
  }

  stop (): void {
    const pubsub = this.#node.services.pubsub
    pubsub.removeEventListener('message', this.#onMessage)
    pubsub.unsubscribe(this.#topic)
    pubsub.topicValidators.delete(this.#topic)
  }

  /**
   * Publishes a message; failures are logged, never thrown (gossip is best effort). With
   * `untilHeardMs`, a message that reached no peer (an agent that just joined: its subscriptions
   * and gossip streams come up after the connection) is published again every 500 ms until one
   * peer got it, for up to that many ms. Resolves with whether a peer got it.
   */
  async publish (message: unknown, options: { untilHeardMs?: number } = {}): Promise<boolean> {
    const data = encode(message)
    if (data.byteLength > MAX_GOSSIP_BYTES) {
      log.error('%s: own message of %d bytes is over the %d limit: not sent', this.#topic, data.byteLength, MAX_GOSSIP_BYTES)
      return false
    }
    // The implementation takes per-message options that the service's interface does not show.
    const pubsub = this.#node.services.pubsub
    const publish = pubsub.publish.bind(pubsub) as (topic: string, data: Uint8Array, opts: { floodPublish: boolean }) => Promise<{ recipients: unknown[] }>
    const until = Date.now() + (options.untilHeardMs ?? 0)
    for (;;) {
      try {
        const { recipients } = await publish(this.#topic, data, { floodPublish: this.#flood() })
        if (recipients.length > 0) return true
        if (Date.now() >= until) return false
      } catch (err) {
        log('%s: not published: %s', this.#topic, (err as Error).message)
        if (Date.now() >= until) return false
      }
      // Not a reason to keep a stopping process alive.
      await new Promise(resolve => { setTimeout(resolve, 500).unref() })
    }
  }

  #validate (message: Message): TopicValidatorResult {
    try {
      this.#parsed.set(message, this.#parse(message))
      return TopicValidatorResult.Accept
    } catch (err) {
      this.#dropped++
      log('%s: dropped a message: %s', this.#topic, (err as Error).message)
      return TopicValidatorResult.Reject
    }
  }
}
