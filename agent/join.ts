import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { preSharedKey } from '@libp2p/pnet'
import { tcp } from '@libp2p/tcp'
import { multiaddr } from '@multiformats/multiaddr'
import { createLibp2p } from 'libp2p'
import { framedOnce, JOIN_PROTOCOL, MAX_JOIN_FRAME_BYTES, openRoster, validateJoinAnswer, WIRE_VERSION, type Invite, type Roster } from '../protocol/index.js'
import { deadline } from './deadline.js'
import { JoinError } from './errors.js'
import { swarmKeyFromBytes } from './swarm/identity.js'
import type { PrivateKey } from '@libp2p/interface'

const JOIN_TIMEOUT_MS = 15_000

export interface Joined {
  roster: Roster
  /** Deployer keys the inviting device trusts. */
  trusted: string[]
  /** The address the inviting device answered on. */
  via: string
}

/**
 * Joins the swarm of an invite as the device `key` (`edge-agent init --join`): dials the inviting
 * device with the invite's swarm key, shows it the invite's secret, and takes the roster it
 * answers with, which must be the invite's owner's and list this device. A bare libp2p node (TCP,
 * pnet, noise, yamux) for the one exchange; it listens nowhere. Throws JoinError saying what to do.
 */
export async function joinSwarm (invite: Invite, key: PrivateKey, options: { signal?: AbortSignal } = {}): Promise<Joined> {
  const self = (await import('@libp2p/peer-id')).peerIdFromPrivateKey(key).toString()
  const node = await createLibp2p({
    privateKey: key,
    addresses: { listen: [] },
    transports: [tcp()],
    connectionProtector: preSharedKey({ psk: swarmKeyFromBytes(invite.swarmKey) }),
    connectionEncrypters: [noise()],
    streamMuxers: [yamux({ enableKeepAlive: false })],
    connectionManager: { dialTimeout: 5000 }
  })
  await node.start()
  const { signal, done } = deadline([options.signal], JOIN_TIMEOUT_MS)
  const failures: string[] = []
  try {
    for (const addr of invite.addrs) {
      let answer: unknown
      try {
        const stream = await node.dialProtocol(multiaddr(addr), JOIN_PROTOCOL, { signal })
        const { framed, first } = framedOnce(stream, MAX_JOIN_FRAME_BYTES, signal)
        await framed.write({ v: WIRE_VERSION, type: 'join', nonce: invite.nonce, expiresAt: invite.expiresAt, mac: invite.mac }, { signal })
        answer = await first
        await framed.close({ signal }).catch(() => {})
      } catch (err) {
        failures.push(`${addr}: ${oneLine(err as Error)}`)
        if (signal.aborted) break
        continue
      }
      const a = validateJoinAnswer(answer)
      if (a.type === 'refused') throw new JoinError(`the inviting device refused: ${a.message}`)
      const roster = await openRoster(a.roster)
      if (roster === undefined || roster.owner !== invite.owner) throw new JoinError(`the device at ${addr} answered with the roster of another owner (${roster?.owner ?? '?'}, not ${invite.owner}): is the invite from it?`)
      if (!roster.devices.includes(self)) throw new JoinError(`the device at ${addr} did not put this one on its roster`)
      return { roster, trusted: a.trusted, via: addr }
    }
    throw new JoinError(`could not reach the inviting device (${failures.join('; ')}): is its agent running, and is the address one this device can reach? ('edge-agent invite --address' sets it)`)
  } finally {
    done()
    await Promise.resolve(node.stop()).catch(() => {})
  }
}

/** An error's message on one line, without libp2p's nested causes. */
function oneLine (err: Error): string {
  const errors = (err as { errors?: Error[] }).errors
  const inner = Array.isArray(errors) && errors.length > 0 ? errors[0] as Error : err
  return (inner.message ?? String(inner)).split('\n')[0] ?? ''
}
