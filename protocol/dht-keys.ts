import { InvalidMessageError } from './errors.js'
import { openRecord, type ManifestBody, type SignedRecord } from './manifest.js'

/**
 * DHT key layout: a function's newest manifest (or its tombstone) lives under `/edgefn/<name>`,
 * and each version's manifest also under `/edgefn/<name>/<version>`, so that older versions stay
 * verifiable (`edge invoke NAME@VERSION`). The validator and selector below are registered with
 * kad-dht for the `edgefn` prefix (without them put() "succeeds" and every get() fails).
 */
export const MANIFEST_PREFIX = 'edgefn'

export function manifestKey (name: string, version?: number): Uint8Array {
  return new TextEncoder().encode(`/${MANIFEST_PREFIX}/${name}${version === undefined ? '' : `/${version}`}`)
}

function parseKey (key: Uint8Array): { name: string, version: number | undefined } {
  const parts = new TextDecoder().decode(key).split('/')
  const ok = (parts.length === 3 || (parts.length === 4 && /^[1-9][0-9]{0,15}$/.test(parts[3] as string))) && parts[1] === MANIFEST_PREFIX && parts[2] !== ''
  if (!ok) throw new InvalidMessageError('not an /edgefn/<name>[/<version>] key')
  return { name: parts[2] as string, version: parts.length === 4 ? Number(parts[3]) : undefined }
}

/** kad-dht validator: schema, size, signature, and that the record is about the key's function. */
export async function validateManifestRecord (key: Uint8Array, value: Uint8Array): Promise<void> {
  await openKeyed(key, value)
}

async function openKeyed (key: Uint8Array, value: Uint8Array): Promise<SignedRecord> {
  const record = await openRecord(value)
  const { name, version } = parseKey(key)
  if (record.body.name !== name) throw new InvalidMessageError(`record for ${record.body.name} stored under ${name}`)
  if (version !== undefined && (record.body.type !== 'manifest' || record.body.version !== version)) {
    throw new InvalidMessageError(`${record.body.type} v${record.body.version} stored under version ${version}`)
  }
  return record
}

/**
 * The validator an agent registers: also refuses records whose signer it does not trust, so that it
 * neither stores nor accepts them (an untrusted key cannot bury a trusted manifest under a higher
 * version or a tombstone, for agents that do not trust it).
 */
export function trustedManifestValidator (trusts: (signer: string) => boolean): (key: Uint8Array, value: Uint8Array) => Promise<void> {
  return async (key, value) => {
    const { signer } = await openKeyed(key, value)
    if (!trusts(signer)) throw new InvalidMessageError(`record signed by untrusted ${signer}`)
  }
}

/** The selector an agent registers: the newest record among those signed by keys it trusts. */
export function trustedManifestSelector (trusts: (signer: string) => boolean): (key: Uint8Array, records: Uint8Array[]) => Promise<number> {
  return async (key, records) => await selectManifestRecord(key, records, trusts)
}

/** Newer wins: higher version, then later deploy time; a tombstone beats a manifest of the same version. */
export function newerRecord (a: ManifestBody, b: ManifestBody): boolean {
  if (a.version !== b.version) return a.version > b.version
  if (a.type !== b.type) return a.type === 'tombstone'
  return a.deployedAt > b.deployedAt
}

/** kad-dht selector: the index of the newest valid record; invalid ones never win. */
export async function selectManifestRecord (_key: Uint8Array, records: Uint8Array[], trusts: (signer: string) => boolean = () => true): Promise<number> {
  let best = -1
  let bestBody: ManifestBody | undefined
  for (let i = 0; i < records.length; i++) {
    try {
      const { body, signer } = await openRecord(records[i] as Uint8Array)
      if (!trusts(signer)) continue
      if (bestBody === undefined || newerRecord(body, bestBody)) {
        best = i
        bestBody = body
      }
    } catch {
      // an invalid record is skipped
    }
  }
  return Math.max(best, 0)
}
