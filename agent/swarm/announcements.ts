import {
  decode, encode, FUNCTIONS_TOPIC, InvalidMessageError, MAX_GOSSIP_BYTES, MAX_INLINE_CODE_BYTES, validateAnnouncement, WIRE_VERSION, type DeployAnnouncement, type FunctionAnnouncement, type FunctionSpec
} from '../../protocol/index.js'
import { GossipTopic } from './gossip.js'
import type { EdgeNode } from './node.js'
import type { Message } from '@libp2p/gossipsub'

/** Decodes and checks an announcement, and that it is signed by the peer it names. */
export function parseAnnouncement (message: Message): FunctionAnnouncement {
  if (message.type !== 'signed') throw new InvalidMessageError('unsigned announcement')
  const announcement = validateAnnouncement(decode(message.data, MAX_GOSSIP_BYTES))
  const claimed = announcement.type === 'deploy' ? announcement.holder : announcement.by
  if (claimed !== message.from.toString()) throw new InvalidMessageError('announcement not signed by the peer it names')
  return announcement
}

/**
 * Deploy and delete announcements on `edge/functions/1`, so that peers learn of a function (and
 * its limits) without waiting for adverts. Soft state: authority moves to signed DHT manifests later.
 */
export function announcements (node: EdgeNode, onAnnouncement: (a: FunctionAnnouncement) => void): GossipTopic<FunctionAnnouncement> {
  // Deploys and deletes are rare and must reach everyone at once, a newcomer whose mesh has not
  // formed yet included: always flooded to every connected peer.
  return new GossipTopic(node, FUNCTIONS_TOPIC, parseAnnouncement, onAnnouncement, () => true)
}

/**
 * The announcement of a new version: its spec and signed record, and its code when that is small
 * enough to ride along (MAX_INLINE_CODE_BYTES, and the whole within gossip's size limit).
 */
export function deployAnnouncement (spec: FunctionSpec, holder: string, record: Uint8Array, code: Uint8Array, at = Date.now()): DeployAnnouncement {
  const announcement: DeployAnnouncement = { v: WIRE_VERSION, type: 'deploy', fn: spec, holder, at, record }
  if (code.byteLength > MAX_INLINE_CODE_BYTES) return announcement
  const inline = { ...announcement, code }
  return encode(inline).byteLength <= MAX_GOSSIP_BYTES ? inline : announcement
}
