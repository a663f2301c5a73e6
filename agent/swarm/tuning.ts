/**
 * The swarm's gossip and liveness settings, in one place without imports, for node.ts and for
 * the simulator (bench/sim), which models the same mesh.
 *
 * Tuned for a few hundred peers, where every message reaches every agent about D times. Measured
 * in an idle 30-agent testnet on one 2-core machine, CPU per agent: 2.2 % with gossipsub's
 * defaults (D 6, 4…12, Dlazy 6), a 2 s heartbeat and pings every 20 s; 1.55 % with pings every
 * minute (each ping is a new stream, four messages each way); 1.3 % with a mesh of 4; 1.05 %
 * with the 5 s heartbeat.
 */
export const GOSSIP = {
  D: 4,
  Dlo: 3,
  Dhi: 8,
  /** Peers outside the mesh that each heartbeat sends IHAVE gossip to, per busy topic. */
  Dlazy: 3,
  /** gossipsub's default: IHAVE also goes to this share of the other topic peers, if more than Dlazy. */
  gossipFactor: 0.25,
  /** Mesh upkeep and IHAVE gossip. */
  heartbeatMs: 5000,
  /**
   * IDONTWANT (gossipsub 1.2) asks mesh peers not to send a copy already received: a control
   * message to every mesh peer for every message, as costly as the copy it saves for a sub-KiB
   * advert (6 % of an idle 50-agent swarm's busy time). Only for large messages.
   */
  idontwantMinBytes: 16 * 1024
} as const

/**
 * How often libp2p's connection monitor pings each connection: liveness, and the RTT policies
 * use. A process that dies closes its connections at once; pings find the silent failures (a
 * device unplugged) well within the 240 s of advert silence that expires a peer anyway.
 */
export const PING_INTERVAL_MS = 60_000
