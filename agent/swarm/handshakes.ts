import type { ConnectionEncrypter, ConnectionProtector, MessageStream, MultiaddrConnection } from '@libp2p/interface'

/** How long a problem stays in `edge status` after it was last seen. */
const PROBLEM_TTL_MS = 60_000
const MAX_PROBLEMS = 32

/** What a user should read when a connection fails its handshake after the swarm key's nonce exchange. */
export const SWARM_KEY_HINT = 'was this device initialised with the swarm\'s key? (edge-agent init --join TOKEN)'

export interface Problem {
  /** What failed, on one line, with what to do. */
  message: string
  count: number
  lastAt: number
}

/**
 * Connections that fail as they are set up, said in a line a user can act on: a peer whose
 * swarm key differs (pnet has no check of its own: the noise handshake after it reads garbage
 * and fails, on both sides), a bootstrap address that refuses or does not answer. libp2p only
 * logs these at debug level, so an agent with the wrong key sat alone and silent; they now go to
 * the agent's log once per address a minute and into `edge status` while they last.
 */
export class Problems {
  readonly #byKey = new Map<string, Problem>()
  readonly #onNew: (message: string) => void

  constructor (onNew: (message: string) => void = () => {}) {
    this.#onNew = onNew
  }

  /** Notes a problem; `key` groups repeats (an address), and the log hears of it once a minute. */
  note (key: string, message: string, now = Date.now()): void {
    const known = this.#byKey.get(key)
    if (known !== undefined && known.message === message && now - known.lastAt < PROBLEM_TTL_MS) {
      known.count++
      known.lastAt = now
      return
    }
    this.#byKey.delete(key)
    this.#byKey.set(key, { message, count: (known?.count ?? 0) + 1, lastAt: now })
    if (this.#byKey.size > MAX_PROBLEMS) this.#byKey.delete(this.#byKey.keys().next().value as string)
    this.#onNew(message)
  }

  has (key: string): boolean {
    return this.#byKey.has(key)
  }

  /** The problem under `key` is over (the address answered). */
  clear (key: string): void {
    this.#byKey.delete(key)
  }

  /** Problems seen in the last minute, newest first. */
  list (now = Date.now()): Problem[] {
    return [...this.#byKey.values()].filter(p => now - p.lastAt < PROBLEM_TTL_MS).sort((a, b) => b.lastAt - a.lastAt)
  }
}

/** A TCP address as a user writes it (127.0.0.1:4001) from a multiaddr's text. */
export function hostPort (addr: string): string {
  const m = /^\/ip[46]\/([^/]+)\/tcp\/(\d+)/.exec(addr)
  return m === null ? addr : `${m[1] as string}:${m[2] as string}`
}

/**
 * Wraps libp2p's connection protector (pnet) and encrypter (noise) so that a connection that
 * fails after pnet's nonce exchange and before the encrypted session is up is noted with the
 * remote's address. With another swarm key, multistream-select reads garbage and the upgrade
 * aborts the connection before noise is even reached; so a protected connection that closes with
 * an error, a timeout or a clean close before its encrypter was chosen counts.
 */
export function watchHandshakes (
  protector: (components: any) => ConnectionProtector,
  encrypter: (components: any) => ConnectionEncrypter,
  problems: Problems
): { protector: (components: any) => ConnectionProtector, encrypter: (components: any) => ConnectionEncrypter } {
  /** Protected connections whose encrypter was reached (the swarm key matched). */
  const reached = new WeakSet<MessageStream>()
  const fail = (connection: MessageStream, remote: string): void => {
    // Whatever ended it: the side whose handshake failed first hangs up, so the other sees a
    // clean close; or both read garbage as a length and wait for more until a timeout. With the
    // same key this step is one round trip of a few bytes.
    // An inbound connection comes from an ephemeral port: its host is what repeats.
    const host = hostPort(remote).replace(/:\d+$/, '')
    if (connection.direction === 'inbound') problems.note(`handshake from ${host}`, `a device at ${host} failed the swarm-key handshake (it holds another swarm's key, or none): refused`)
    else problems.note(`handshake ${hostPort(remote)}`, `${hostPort(remote)} refused the swarm key: ${SWARM_KEY_HINT}`)
  }
  return {
    protector: (components) => {
      const inner = protector(components)
      const protect = inner.protect.bind(inner)
      inner.protect = async (connection, options) => {
        const boxed = await protect(connection, options)
        const remote = (connection as Partial<MultiaddrConnection>).remoteAddr?.toString()
        if (remote !== undefined) {
          connection.addEventListener('close', () => { if (!reached.has(boxed)) fail(connection, remote) }, { once: true })
        }
        return boxed
      }
      return inner
    },
    encrypter: (components) => {
      const inner = encrypter(components)
      const watch = (secure: ConnectionEncrypter['secureInbound']): ConnectionEncrypter['secureInbound'] => async (connection, options) => {
        reached.add(connection)
        return await secure(connection, options)
      }
      inner.secureInbound = watch(inner.secureInbound.bind(inner))
      inner.secureOutbound = watch(inner.secureOutbound.bind(inner))
      return inner
    }
  }
}
