import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client'

/** Where a call ran, as the metrics label it: here, on a peer this agent sent it to, here for a peer that sent it; none when no place took it. */
export type Placement = 'local' | 'offloaded' | 'received' | 'none'

/** An error's outcome label: few and fixed, so that series stay few. */
const OUTCOMES: Record<string, string> = {
  OverloadedError: 'overloaded',
  BusyError: 'busy',
  DeadlineExceededError: 'timeout',
  TimeoutError: 'timeout',
  FunctionError: 'function_error',
  FunctionNotFoundError: 'not_found',
  UntrustedManifestError: 'untrusted',
  CancelledError: 'cancelled',
  InterruptedError: 'interrupted',
  NoCandidateError: 'no_place',
  BadRequestError: 'bad_request',
  FetchFailedError: 'fetch_failed'
}

/** The function label of calls for names this agent does not know: one series for all of them, however many a peer makes up. */
export const UNKNOWN_FUNCTION = '(unknown)'

export function outcomeOf (err: Error | undefined): string {
  return err === undefined ? 'ok' : OUTCOMES[err.name] ?? 'error'
}

/**
 * Prometheus metrics of one agent, served at /metrics: its calls by function, placement and
 * outcome, their durations (every outcome), cold starts, slots, queues and containers, peers,
 * gossip, build info; and (registered by libp2p, prometheus-metrics) libp2p's own — connections,
 * streams and bytes per protocol, gossipsub, kad-dht queries.
 */
export class Metrics {
  readonly registry = new Registry()
  readonly #calls = new Counter({ name: 'edge_calls_total', help: 'Calls by function, where they ran (local: here, as asked here; offloaded: on a peer, as asked here; received: here, for a peer; none: nowhere) and outcome', labelNames: ['function', 'placement', 'outcome'] as const, registers: [this.registry] })
  readonly #duration = new Histogram({ name: 'edge_invocation_duration_seconds', help: 'Time of calls from their start at this agent to their answer, by function, placement and outcome (failures too)', labelNames: ['function', 'placement', 'outcome'] as const, buckets: [0.0005, 0.001, 0.002, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 30], registers: [this.registry] })
  readonly #coldStarts = new Counter({ name: 'edge_cold_starts_total', help: 'Calls that ran here without a warm instance (a module compiled, a container started, code fetched), by function and runtime', labelNames: ['function', 'runtime'] as const, registers: [this.registry] })
  readonly ignoredAnnouncements = new Counter({ name: 'edge_announcements_ignored_total', help: 'Deploy and delete announcements that changed nothing here, by reason: no signed record, signed by a key not trusted here, a record of another version, a record that does not open', labelNames: ['reason'] as const, registers: [this.registry] })
  readonly badChunks = new Counter({ name: 'edge_fetch_bad_chunks_total', help: 'Chunks of code a provider sent that did not match their CID (the provider was penalised)', registers: [this.registry] })

  constructor (peerCount: () => number) {
    // prom-client samples event-loop lag with a timer every 10 ms by default: a hundred wake-ups a
    // second, most of what an idle agent cost (0.75 % of a core alone). Every 100 ms still shows lag.
    collectDefaultMetrics({ register: this.registry, eventLoopMonitoringPrecision: 100 })
    // eslint-disable-next-line no-new
    new Gauge({ name: 'edge_peers', help: 'Peers in the peer table', registers: [this.registry], collect () { this.set(peerCount()) } })
  }

  /** One series, value 1, whose labels say what runs: version, Node, platform, arch. */
  buildInfo (version: string): void {
    const info = new Gauge({ name: 'edge_build_info', help: 'The agent\'s version and platform (value 1)', labelNames: ['version', 'node', 'platform', 'arch'] as const, registers: [this.registry] })
    info.set({ version, node: process.version, platform: process.platform, arch: process.arch }, 1)
  }

  /** Slots, busy slots and queued calls per runtime, and containers, read when scraped. */
  watchRuntimes (read: () => { runtimes: Array<{ kind: string, slots: number, busy: number, queued: number }>, containers: number | undefined }): void {
    /* eslint-disable no-new */
    new Gauge({ name: 'edge_slots', help: 'Calls a runtime runs at once', labelNames: ['runtime'] as const, registers: [this.registry], collect () { for (const r of read().runtimes) this.set({ runtime: r.kind }, r.slots) } })
    new Gauge({ name: 'edge_slots_busy', help: 'Calls running now, by runtime', labelNames: ['runtime'] as const, registers: [this.registry], collect () { for (const r of read().runtimes) this.set({ runtime: r.kind }, r.busy) } })
    new Gauge({ name: 'edge_queued_calls', help: 'Calls waiting for a slot, by runtime', labelNames: ['runtime'] as const, registers: [this.registry], collect () { for (const r of read().runtimes) this.set({ runtime: r.kind }, r.queued) } })
    new Gauge({ name: 'edge_containers', help: 'Function containers this agent keeps (warm or running)', registers: [this.registry], collect () { this.set(read().containers ?? 0) } })
    /* eslint-enable no-new */
  }

  /** Counters kept elsewhere (adverts sent, gossip dropped), read when scraped. */
  watchCounter (name: string, help: string, read: () => number): void {
    let last = 0
    // eslint-disable-next-line no-new
    new Counter({
      name,
      help,
      registers: [this.registry],
      collect () {
        const now = read()
        if (now > last) this.inc(now - last)
        last = now
      }
    })
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

  /** A call that ended: counted, and its duration observed, under its function, placement and outcome. */
  call (fn: string, placement: Placement, outcome: string, ms: number): void {
    this.#calls.inc({ function: fn, placement, outcome })
    this.#duration.observe({ function: fn, placement, outcome }, ms / 1000)
  }

  coldStart (fn: string, runtime: string): void {
    this.#coldStarts.inc({ function: fn, runtime })
  }
}
