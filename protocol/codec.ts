import { Encoder } from 'cbor-x'
import { InvalidMessageError, MessageTooLargeError } from './errors.js'

/**
 * CBOR without cbor-x records or tags, so that any CBOR implementation can speak the protocol.
 * Byte strings decode to Uint8Array (Buffer on Node).
 */
const cbor = new Encoder({ useRecords: false, mapsAsObjects: true, tagUint8Array: false, pack: false, structuredClone: false })

export function encode (message: unknown): Uint8Array {
  return cbor.encode(message)
}

/** Decodes untrusted bytes, refusing anything over `maxBytes` before parsing it. */
export function decode (data: Uint8Array, maxBytes: number): unknown {
  if (data.byteLength > maxBytes) throw new MessageTooLargeError(`message of ${data.byteLength} bytes exceeds the limit of ${maxBytes}`)
  try {
    return cbor.decode(data)
  } catch (err) {
    throw new InvalidMessageError('malformed CBOR', { cause: err })
  }
}
