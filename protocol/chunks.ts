import { createHash } from 'node:crypto'
import { CID } from 'multiformats/cid'
import * as raw from 'multiformats/codecs/raw'
import { create as createDigest } from 'multiformats/hashes/digest'
import { sha256 } from 'multiformats/hashes/sha2'
import { InvalidMessageError } from './errors.js'

/**
 * Function code is split into chunks addressed by CIDv1 (raw codec, sha2-256): the DHT stores
 * who provides each chunk, `/edge/fetch/1` moves the bytes, and every chunk is checked against its
 * CID before it is used.
 */
export const CHUNK_BYTES = 1024 * 1024

export interface Chunk {
  cid: CID
  bytes: Uint8Array
}

export function cidOf (bytes: Uint8Array): CID {
  return CID.createV1(raw.code, createDigest(sha256.code, createHash('sha256').update(bytes).digest()))
}

export function chunk (code: Uint8Array, size = CHUNK_BYTES): Chunk[] {
  if (code.byteLength === 0) return []
  const chunks: Chunk[] = []
  for (let off = 0; off < code.byteLength; off += size) {
    const bytes = code.subarray(off, off + size)
    chunks.push({ cid: cidOf(bytes), bytes })
  }
  return chunks
}

/** True if `bytes` are the content `cid` names. */
export function matches (cid: CID, bytes: Uint8Array): boolean {
  return cid.code === raw.code && cid.multihash.code === sha256.code && cidOf(bytes).equals(cid)
}

export function parseCid (text: string): CID {
  let cid: CID
  try {
    cid = CID.parse(text)
  } catch (err) {
    throw new InvalidMessageError(`not a CID: ${text.slice(0, 80)}`, { cause: err })
  }
  if (cid.version !== 1 || cid.code !== raw.code || cid.multihash.code !== sha256.code) {
    throw new InvalidMessageError(`unsupported CID ${text.slice(0, 80)}: expected CIDv1, raw, sha2-256`)
  }
  return cid
}
