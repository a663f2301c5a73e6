/** Protocol ids of the direct streams between agents. Gossip is never the path of a request. */
export const INVOKE_PROTOCOL = '/edge/invoke/1'
export const FETCH_PROTOCOL = '/edge/fetch/1'
/** On each new connection: both sides' adverts, the peers each knows, and their signed adverts. */
export const HELLO_PROTOCOL = '/edge/hello/1'
/** A device joining with an invite asks the owner's device for its place on the roster (roster.ts). */
export const JOIN_PROTOCOL = '/edge/join/1'
/** Largest hello frame: an advert, up to MAX_HELLO_PEERS peers with their addresses, and signed adverts up to MAX_HELLO_RELAY_BYTES. */
export const MAX_HELLO_BYTES = 1024 * 1024
export const MAX_HELLO_PEERS = 256
/** Signed adverts of others in a hello: at most this many, of at most this many bytes in all. */
export const MAX_HELLO_RELAYS = 256
export const MAX_HELLO_RELAY_BYTES = 512 * 1024
/** Peers an advert may report lost (their connection gone, a redial refused). */
export const MAX_LOST_PEERS = 32

/** A signed roster of an owner's devices (roster.ts): ~500 devices. */
export const MAX_ROSTER_BYTES = 32 * 1024
/** What a joining device may say and hear on /edge/join/1. */
export const MAX_JOIN_FRAME_BYTES = MAX_ROSTER_BYTES + 8 * 1024

/** Gossipsub topics: soft state only. */
export const ADVERTS_TOPIC = 'edge/adverts/1'
export const FUNCTIONS_TOPIC = 'edge/functions/1'

/** Version carried in every wire message. Receivers drop messages of another version. */
export const WIRE_VERSION = 1

/** Size limits, checked before decoding. */
export const MAX_GOSSIP_BYTES = 64 * 1024
/** Largest invoke request or response frame: input/output up to 6 MiB plus envelope. */
export const MAX_INVOKE_FRAME_BYTES = 6 * 1024 * 1024 + 64 * 1024
export const MAX_IO_BYTES = 6 * 1024 * 1024
/** Code travels in chunks of this size over /edge/fetch/1. */
export const FETCH_CHUNK_BYTES = 256 * 1024
export const MAX_FETCH_FRAME_BYTES = FETCH_CHUNK_BYTES + 64 * 1024
/** Largest function artifact accepted by this version. */
export const MAX_CODE_BYTES = 64 * 1024 * 1024
/**
 * Code up to this size rides in its deploy announcement: every agent has it as soon as it hears
 * of the function, so a first call runs at once instead of dialling a holder (the whole swarm
 * dialling the deployer at the first calls after a deploy). Within MAX_GOSSIP_BYTES with the
 * spec and a signed record of up to 16 KiB.
 */
export const MAX_INLINE_CODE_BYTES = 32 * 1024

/** HTTP header of the agent API that carries a record signed by the deployer's own key (base64). */
export const SIGNED_RECORD_HEADER = 'edge-signed-record'
