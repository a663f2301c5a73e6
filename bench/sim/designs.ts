/** An advert design to compare: how the real AdvertService and PeerTable are configured. */
export interface Design {
  name: string
  /** AdvertService heartbeat: an advert at least this often. */
  heartbeatMs: number
  /** AdvertService rate bound, and the tick of its timer (start() ticks at this period). */
  minIntervalMs: number
  /** PeerTable expiry: advert silence after which a peer is dropped. */
  expiryMs: number
  /** Jitter the heartbeat ±25 % (the current design); off, a period is exact (the old design). */
  jitter: boolean
}

export const DESIGNS: Record<string, Design> = {
  // The agent's defaults: on meaningful change (≤ 2/s; load alone ≤ 1 per 5 s), heartbeat 60 s jittered, 240 s expiry.
  'on-change': { name: 'on-change', heartbeatMs: 60_000, minIntervalMs: 500, expiryMs: 240_000, jitter: true },
  // On change with the heartbeat of the defaults before this run chose 60 s.
  'on-change-30s': { name: 'on-change-30s', heartbeatMs: 30_000, minIntervalMs: 500, expiryMs: 120_000, jitter: true },
  // On change with a faster heartbeat (the defaults before the simulation chose 30 s).
  'on-change-10s': { name: 'on-change-10s', heartbeatMs: 10_000, minIntervalMs: 500, expiryMs: 60_000, jitter: true },
  // The old design: every agent every second, changed or not, peers expired after 3.5 s (three missed adverts).
  'periodic-1s': { name: 'periodic-1s', heartbeatMs: 1000, minIntervalMs: 1000, expiryMs: 3500, jitter: false }
}

/** Designs run by default at a size: periodic-1s costs ten times the messages, too slow to simulate at 10,000 in a bench's time. */
export function defaultDesigns (size: number): string[] {
  return size > 2000 ? ['on-change', 'on-change-30s'] : ['on-change', 'on-change-30s', 'on-change-10s', 'periodic-1s']
}
