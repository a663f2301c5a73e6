import { setMaxListeners } from 'node:events'
import { logger } from './log.js'
import {
  framedOnce, inviteMacChecks, JOIN_PROTOCOL, MAX_JOIN_FRAME_BYTES, openRoster, signRoster, validateJoinRequest, WIRE_VERSION,
  type JoinAnswer, type Roster
} from '../protocol/index.js'
import { deadline } from './deadline.js'
import { loadRoster, writeRoster } from './swarm/identity.js'
import type { Connection, PrivateKey, Stream } from '@libp2p/interface'
import type { EdgeNode } from './swarm/node.js'

const log = logger('edge:agent:membership')

const JOIN_DEADLINE_MS = 10_000
/** Joins answered at once; beyond, a join is refused (the joining device tries again). */
const MAX_JOINS = 4

export interface MembershipInit {
  dataDir: string
  selfId: string
  /** The owner whose rosters this device takes (config.owner). */
  owner: string
  /** The owner key, on the device that holds it: that device answers joins and signs new rosters. */
  ownerKey: PrivateKey | undefined
  /** The deployer keys this device trusts besides the owner's devices: a joining device trusts them too. */
  trusted: () => string[]
  /** The roster changed (a device joined, one was revoked, a newer roster came from a peer). */
  onChange: (roster: Roster) => void
  /** Tells the swarm of a roster this device made (gossip). */
  publish: (record: Uint8Array) => void
}

/**
 * This device's place among its owner's devices: the newest roster it has seen (stored, so that a
 * restart keeps it), taken from peers' hellos and gossip when it is newer and signed by the owner.
 * On the device holding the owner key it also answers /edge/join/1 (a device with an invite is
 * put on the roster) and carries out revocations. Roster changes happen one at a time.
 */
export class Membership {
  readonly #node: EdgeNode
  readonly #init: MembershipInit
  #roster: Roster | undefined
  #changing: Promise<unknown> = Promise.resolve()
  #joins = 0
  #controller = new AbortController()

  constructor (node: EdgeNode, init: MembershipInit) {
    this.#node = node
    this.#init = init
  }

  /** The roster held, when it is of this device's owner. */
  get roster (): Roster | undefined {
    return this.#roster
  }

  /** The owner's devices as of the roster held (none without one). */
  devices (): string[] {
    return this.#roster?.devices ?? []
  }

  get holdsOwnerKey (): boolean {
    return this.#init.ownerKey !== undefined
  }

  async start (): Promise<void> {
    this.#controller = new AbortController()
    setMaxListeners(Infinity, this.#controller.signal)
    const stored = loadRoster(this.#init.dataDir)
    if (stored !== undefined) {
      try {
        const roster = await openRoster(stored)
        if (roster?.owner === this.#init.owner) this.#roster = roster
        else log.error('the stored roster is of owner %s, not of this device\'s owner %s: ignored', roster?.owner, this.#init.owner)
      } catch (err) {
        log.error('the stored roster does not check: ignored (a peer will pass on the current one): %e', err)
      }
    }
    if (this.#init.ownerKey !== undefined) {
      await this.#node.handle(JOIN_PROTOCOL, (stream, connection) => { void this.#answer(stream, connection) }, { maxInboundStreams: 2, maxOutboundStreams: 1 })
    }
  }

  async stop (): Promise<void> {
    this.#controller.abort()
    if (this.#init.ownerKey !== undefined) await this.#node.unhandle(JOIN_PROTOCOL)
    await this.#changing
  }

  /** A roster a peer holds (hello, gossip): taken if it is this device's owner's and newer than the one held. */
  async offer (record: Uint8Array, from: string): Promise<boolean> {
    let roster: Roster | undefined
    try {
      roster = await openRoster(record, (r) => r.owner === this.#init.owner && r.seq > (this.#roster?.seq ?? 0))
    } catch (err) {
      log('a roster from %s does not check: %s', from, (err as Error).message)
      return false
    }
    if (roster === undefined || roster.seq <= (this.#roster?.seq ?? 0)) return false
    log.info('roster v%d of the owner\'s devices from %s: %d devices, %d revoked', roster.seq, from, roster.devices.length, roster.revoked.length)
    this.#adopt(roster)
    return true
  }

  /**
   * Takes devices off the roster for good (the owner key's device only; elsewhere nothing
   * happens). Resolves with those newly revoked.
   */
  async revoke (ids: string[]): Promise<string[]> {
    return await this.#change(async (current) => {
      const fresh = ids.filter(id => !current.revoked.includes(id) && id !== this.#init.selfId)
      if (fresh.length === 0) return { next: undefined, result: [] }
      return {
        next: { devices: current.devices.filter(d => !fresh.includes(d)), revoked: [...current.revoked, ...fresh] },
        result: fresh
      }
    }) ?? []
  }

  /** Puts a device on the roster (the owner key's device only); resolves with the roster that lists it. */
  async #admit (device: string): Promise<Roster> {
    await this.#change(async (current) => {
      if (current.devices.includes(device)) return { next: undefined, result: undefined }
      return { next: { devices: [...current.devices, device], revoked: current.revoked }, result: undefined }
    })
    if (this.#roster === undefined) throw new Error('no roster after a join')
    return this.#roster
  }

  /**
   * A change of the roster, one at a time: `edit` sees the current roster and says what the next
   * one lists (or none, for no change); the next is signed, stored, applied and published.
   */
  async #change<T> (edit: (current: Roster) => Promise<{ next: { devices: string[], revoked: string[] } | undefined, result: T }>): Promise<T | undefined> {
    const key = this.#init.ownerKey
    if (key === undefined) return undefined
    const run = this.#changing.then(async () => {
      const current = this.#roster ?? { owner: this.#init.owner, seq: 0, devices: [this.#init.selfId], revoked: [], issuedAt: 0, record: new Uint8Array(0) }
      const { next, result } = await edit(current)
      if (next === undefined) return result
      const record = await signRoster(key, { seq: current.seq + 1, ...next })
      const roster = await openRoster(record)
      if (roster === undefined) throw new Error('a roster just signed does not open')
      this.#adopt(roster)
      this.#init.publish(record)
      return result
    })
    this.#changing = run.catch(() => {})
    return await run
  }

  #adopt (roster: Roster): void {
    writeRoster(this.#init.dataDir, roster.record)
    this.#roster = roster
    this.#init.onChange(roster)
  }

  async #answer (stream: Stream, connection: Connection): Promise<void> {
    const from = connection.remotePeer.toString()
    const { signal, done } = deadline(this.#controller.signal, JOIN_DEADLINE_MS)
    try {
      const { framed, first } = framedOnce(stream, MAX_JOIN_FRAME_BYTES, signal)
      const message = await first
      let answer: JoinAnswer
      if (this.#joins >= MAX_JOINS) {
        answer = refused('the inviting device is busy with other joins: try again in a moment')
      } else {
        this.#joins++
        answer = await this.#join(message, from).catch((err: Error) => {
          log.error('a join from %s failed: %e', from, err)
          return refused(`the inviting device could not add this one: ${err.message}`)
        }).finally(() => { this.#joins-- })
      }
      await framed.write(answer, { signal })
      await framed.close({ signal })
    } catch (err) {
      log('join from %s failed: %s', from, (err as Error).message)
      stream.abort(err as Error)
    } finally {
      done()
    }
  }

  /** The answer to a join request from `from`: a welcome with the roster that lists it, or why not. */
  async #join (message: unknown, from: string): Promise<JoinAnswer> {
    const key = this.#init.ownerKey
    if (key === undefined) return refused('this device does not hold the owner key')
    let request
    try {
      request = validateJoinRequest(message)
    } catch (err) {
      return refused((err as Error).message)
    }
    if (!inviteMacChecks(key, request.nonce, request.expiresAt, request.mac)) {
      log.info('refused a join from %s: the invite was not made by this owner key', from)
      return refused('this invite was not made by the owner key of the device it names: ask the owner for a new one (edge-agent invite)')
    }
    if (request.expiresAt < Date.now()) {
      log.info('refused a join from %s: its invite expired at %s', from, new Date(request.expiresAt).toISOString())
      return refused(`the invite expired at ${new Date(request.expiresAt).toISOString()}: make a new one with 'edge-agent invite' on the inviting device`)
    }
    if (this.#roster?.revoked.includes(from) === true) {
      log.info('refused a join from revoked device %s', from)
      return refused(`this device (${from}) was revoked: it cannot join again with the same identity (a fresh 'edge-agent init --join' in an empty data directory makes a new one)`)
    }
    const roster = await this.#admit(from)
    log.info('device %s joined the owner\'s devices (roster v%d, %d devices)', from, roster.seq, roster.devices.length)
    return { v: WIRE_VERSION, type: 'welcome', roster: roster.record, trusted: this.#init.trusted().slice(0, 64) }
  }
}

function refused (message: string): JoinAnswer {
  return { v: WIRE_VERSION, type: 'refused', message }
}
