import { BusyError, CONTAINER_RUNTIMES, FunctionNotFoundError, UntrustedManifestError, type FunctionRef, type FunctionSpec, type Manifest } from '../../protocol/index.js'
import type { Resolved } from './manifests.js'
import { refKey as id } from './registry.js'

export interface TrustInit {
  selfId: string
  /** Peer ids of deployers trusted besides this agent. */
  trusted: string[]
  /** Where signed manifests come from (ManifestStore: the DHT, or kept here). */
  manifests: { find: (ref: FunctionRef, options?: { signal?: AbortSignal }) => Promise<Resolved | undefined> }
  /** Told when a trusted tombstone turns up that deletes a version this agent still knew (it missed the delete). */
  onDeleted?: (name: string, version: number) => void
}

/** What a trusted manifest says of one version: its limits count, and its chunks are how the code is fetched. */
export type Vouched = Omit<FunctionSpec, 'name' | 'version' | 'sha256'> & { chunks: string[] }

/** What a trusted manifest says a version is (its runtime, limits and, in containers, entry, env and settings). */
export function vouchedBy (body: Manifest): Omit<FunctionSpec, 'name' | 'version' | 'sha256'> {
  const inContainer = CONTAINER_RUNTIMES.includes(body.runtime)
  return {
    runtime: body.runtime,
    size: body.size,
    memoryBytes: body.limits.memoryBytes,
    timeoutMs: body.limits.timeoutMs,
    deployedAt: body.deployedAt,
    ...(inContainer ? { entry: body.entry } : {}),
    ...(Object.keys(body.env).length > 0 ? { env: body.env } : {}),
    ...(inContainer && body.container !== undefined ? { container: body.container } : {})
  }
}



/** DHT look-ups of manifests in flight at once; beyond, a call is answered BUSY at once (another agent may know the function). */
export const MAX_LOOKUPS = 8
/** A version no trusted manifest vouched for is not looked up again for this long (a flood of calls for made-up names costs one look-up each, not one per call). */
export const MISS_TTL_MS = 5000
const MAX_MISSES = 4096

/**
 * An agent runs only functions whose signed manifest is signed by itself or by a key in its
 * config. The manifest — from the DHT, or kept here for what this agent deployed — is checked once
 * per version; its limits are the ones the function runs with.
 */
export class Trust {
  readonly #init: TrustInit
  #trusted: Set<string>
  /** Devices their owner revoked (the roster's): named so in refusals, instead of being told to trust them. */
  #revoked = new Set<string>()
  /** Authorised versions, `name@version:sha256` → what the manifest says. */
  readonly #ok = new Map<string, Vouched>()
  /** Who signed each authorised version found in the DHT (a version deployed here is this agent's own). */
  readonly #signers = new Map<string, string>()
  /** Versions lately found unvouched, with why (the message, not the error and its stack: 4,096 of those add up), until when; oldest first, bounded. */
  readonly #misses = new Map<string, { deleted: boolean, message: string, signer: string | undefined, until: number }>()
  #lookups = 0

  constructor (init: TrustInit) {
    this.#init = init
    this.#trusted = new Set([init.selfId, ...init.trusted])
  }

  /**
   * Replaces the keys trusted besides this agent's own (the config changed: `edge-agent trust
   * add/remove` while the agent runs). Versions a removed key vouched for are forgotten, to be
   * checked again at their next call; remembered misses are too, as a version may be trusted now.
   */
  setTrusted (keys: readonly string[], revoked: readonly string[] = []): { added: string[], removed: string[] } {
    this.#revoked = new Set(revoked)
    const next = new Set([this.#init.selfId, ...keys])
    const added = [...next].filter(k => !this.#trusted.has(k))
    const removed = [...this.#trusted].filter(k => !next.has(k))
    this.#trusted = next
    if (removed.length > 0) {
      for (const [k, signer] of this.#signers) {
        if (next.has(signer)) continue
        this.#signers.delete(k)
        this.#ok.delete(k)
      }
    }
    if (added.length > 0 || removed.length > 0) this.#misses.clear()
    return { added, removed }
  }

  trusts (signer: string): boolean {
    return this.#trusted.has(signer)
  }

  /** Why `key` is not trusted and what to do, as the end of a refusal's line ("…, and " + this). */
  distrust (key: string): string {
    return this.#revoked.has(key)
      ? 'its owner revoked that device'
      : `this agent does not trust it ('edge-agent trust add ${key}' on it, or join that device to this agent's owner with 'edge-agent invite')`
  }

  /**
   * Whether a peer is one of this swarm owner's devices, which this agent calls, serves and takes
   * adverts from: the swarm key is the outer wall, this the inner one. Today a peer is trusted when
   * its id is a trusted key (a testnet's agents trust each other's ids).
   */
  trustsPeer (peerId: string): boolean {
    return this.#trusted.has(peerId)
  }

  /** Records a version deployed here, whose manifest this agent checked (or signed) itself. */
  allow (spec: FunctionSpec, chunks: string[]): void {
    const { name: _name, version: _version, sha256: _sha256, ...fields } = spec
    this.#ok.set(id(spec), { ...fields, chunks })
  }

  isAuthorised (ref: FunctionRef): boolean {
    return this.#ok.has(id(ref))
  }

  /**
   * Resolves once a trusted manifest vouches for exactly this version and code; returns what it
   * says (limits, chunks). Throws UntrustedManifestError (naming the signer to trust) or
   * FunctionNotFoundError.
   */
  async authorise (ref: FunctionRef, options: { signal?: AbortSignal } = {}): Promise<Vouched> {
    const known = this.#ok.get(id(ref))
    if (known !== undefined) return known
    const miss = this.#misses.get(id(ref))
    if (miss !== undefined && miss.until > Date.now()) {
      throw miss.deleted ? new FunctionNotFoundError(miss.message) : new UntrustedManifestError(miss.message, { signer: miss.signer })
    }
    if (this.#lookups >= MAX_LOOKUPS) throw new BusyError(`${MAX_LOOKUPS} manifest look-ups are in progress here already`, { retryAfterMs: 1000 })
    this.#lookups++
    try {
      return await this.#lookUp(ref, options)
    } catch (err) {
      if (err instanceof UntrustedManifestError || err instanceof FunctionNotFoundError) {
        this.#misses.delete(id(ref))
        this.#misses.set(id(ref), { deleted: err instanceof FunctionNotFoundError, message: err.message, signer: err instanceof UntrustedManifestError ? err.signer : undefined, until: Date.now() + MISS_TTL_MS })
        if (this.#misses.size > MAX_MISSES) this.#misses.delete(this.#misses.keys().next().value as string)
      }
      throw err
    } finally {
      this.#lookups--
    }
  }

  async #lookUp (ref: FunctionRef, options: { signal?: AbortSignal }): Promise<Vouched> {
    const resolved = await this.#init.manifests.find(ref, options)
    if (resolved === undefined) throw new UntrustedManifestError(`no signed manifest for '${ref.name}' v${ref.version} in the DHT: this agent runs only functions whose deployer signed them`)
    const { body, signer } = resolved.record
    if (!this.trusts(signer)) {
      throw new UntrustedManifestError(`'${ref.name}' v${body.version} is signed by ${signer}, and ${this.distrust(signer)}`, { signer })
    }
    if (body.type === 'tombstone' && body.version >= ref.version) {
      this.#init.onDeleted?.(ref.name, body.version)
      throw new FunctionNotFoundError(`'${ref.name}' v${ref.version} was deleted`)
    }
    if (body.type !== 'manifest' || body.version !== ref.version || body.sha256 !== ref.sha256) {
      throw new UntrustedManifestError(`the DHT's manifest of '${ref.name}' is v${body.version}, which does not vouch for v${ref.version} (${ref.sha256.slice(0, 12)})`)
    }
    const vouched: Vouched = { ...vouchedBy(body), chunks: body.chunks }
    this.#ok.set(id(ref), vouched)
    this.#signers.set(id(ref), signer)
    return vouched
  }
}
