import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client'

/** Prometheus metrics of one agent, served at /metrics. */
export class Metrics {
  readonly registry = new Registry()
  readonly #invocations = new Counter({ name: 'edge_invocations_total', help: 'Invocations started at this agent, by where they ran and outcome', labelNames: ['where', 'outcome'] as const, registers: [this.registry] })
  readonly #duration = new Histogram({ name: 'edge_invocation_seconds', help: 'End-to-end time of successful invocations started at this agent', labelNames: ['where'] as const, buckets: [0.0005, 0.001, 0.002, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 30], registers: [this.registry] })
  readonly offloadedIn = new Counter({ name: 'edge_offloaded_in_total', help: 'Calls peers offloaded to this agent, by outcome', labelNames: ['outcome'] as const, registers: [this.registry] })
  readonly ignoredAnnouncements = new Counter({ name: 'edge_announcements_ignored_total', help: 'Deploy and delete announcements that changed nothing here, by reason: no signed record, signed by a key not trusted here, a record of another version, a record that does not open', labelNames: ['reason'] as const, registers: [this.registry] })
  readonly badChunks = new Counter({ name: 'edge_fetch_bad_chunks_total', help: 'Chunks of code a provider sent that did not match their CID (the provider was penalised)', registers: [this.registry] })

  constructor (peerCount: () => number) {
    // prom-client samples event-loop lag with a timer every 10 ms by default: a hundred wake-ups a
    // second, most of what an idle agent cost (0.75 % of a core alone). Every 100 ms still shows lag.
    collectDefaultMetrics({ register: this.registry, eventLoopMonitoringPrecision: 100 })
    // eslint-disable-next-line no-new
    new Gauge({ name: 'edge_peers', help: 'Peers in the peer table', registers: [this.registry], collect () { this.set(peerCount()) } })
  }

  /** Async calls by state (queued, running, done, failed), read when scraped. */
  watchAsync (counts: () => Record<'queued' | 'running' | 'done' | 'failed', number>): void {
    // eslint-disable-next-line no-new
    new Gauge({
      name: 'edge_async_calls',
      help: 'Async calls this agent has accepted, by state (finished ones until their results expire)',
      labelNames: ['state'] as const,
      registers: [this.registry],
      collect () {
        for (const [state, n] of Object.entries(counts())) this.set({ state }, n)
      }
    })
  }

  invocation (where: 'local' | 'remote' | 'none', outcome: 'ok' | 'error' | 'overloaded', ms: number): void {
    this.#invocations.inc({ where, outcome })
    if (outcome === 'ok') this.#duration.observe({ where }, ms / 1000)
  }
}
