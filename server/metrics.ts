/**
 * The process's Prometheus metrics (prom-client), served at `GET /metrics` (http/metrics-endpoint.ts).
 * Instruments are updated at the edges: the RPC interceptor (rpc/metrics-interceptor.ts), the runs service
 * (creates, cancels, events), the worker (claims, activations, step attempts, leases). Labels are bounded:
 * workflow names (the loaded set), statuses, outcomes, RPC methods and codes; never run ids or namespaces.
 * Gauges that need the database (queue depth) are read when scraped, not on a timer.
 * docs/metrics.md lists every metric; keep it in step.
 */
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from "prom-client";

/** 1 ms to 1 h: steps range from a cache lookup to a long report. */
export const durationBuckets = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 1800, 3600];
/** RPCs and activations: 0.5 ms to 1 min (long polls and streams end in the top bucket or +Inf). */
const callBuckets = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];

export type RunOrigin = "api" | "child";
export type StepAttemptOutcome = "completed" | "failed" | "retrying";
export type ActivationOutcome = "completed" | "failed" | "suspended" | "cancelled" | "lease_lost" | "shutdown" | "store_error" | "diverged" | "abnormal" | "released";

export interface QueueDepth {
  queued: number;
  waiting: number;
  /** Seconds the oldest run that is due (queued, or waiting past its `available_at`) has waited; 0 if none. */
  oldestDueSeconds: number;
}

export class Metrics {
  readonly registry = new Registry();
  private queueProbe: (() => Promise<QueueDepth>) | undefined;
  private poolProbe: (() => { total: number; idle: number; waiting: number }) | undefined;

  readonly runsCreated = new Counter({
    name: "cairn_runs_created_total",
    help: "Runs created, by workflow and origin (api: CreateRun or REST; child: ctx.startWorkflow; fork: ForkRun). Deduplicated creates are not counted.",
    labelNames: ["workflow", "origin"] as const,
    registers: [this.registry],
  });
  readonly waiterReads = new Counter({
    name: "cairn_waiter_reads_total",
    help: "Store reads made for waiters on runs, by waiter (await_run, watch_run: a shared tail's refresh, watch_runs, safety_net: one batched recheck of every waited run). Changes reach waiters through one feed per process; this counts what they cost.",
    labelNames: ["waiter"] as const,
    registers: [this.registry],
  });
  readonly http2ClientResets = new Counter({
    name: "cairn_http2_client_resets_total",
    help: "HTTP/2 streams the client reset (RST_STREAM) before they ended. Node's HTTP/2 server closes a connection with INTERNAL_ERROR, and every call on it, once its client has reset 1,000 streams in a burst (33 a second after): a client that cancels its streams instead of reading them to their end is heading there.",
    registers: [this.registry],
  });
  readonly runsEnded = new Counter({
    name: "cairn_runs_ended_total",
    help: "Runs that ended, by workflow and final status (completed, failed, cancelled).",
    labelNames: ["workflow", "status"] as const,
    registers: [this.registry],
  });
  readonly stepAttempts = new Counter({
    name: "cairn_step_attempts_total",
    help: "Step attempts run by this process, by workflow and outcome (completed, failed: no retry left, retrying).",
    labelNames: ["workflow", "outcome"] as const,
    registers: [this.registry],
  });
  readonly stepDuration = new Histogram({
    name: "cairn_step_attempt_duration_seconds",
    help: "Duration of one step attempt (the step's function), by workflow and outcome.",
    labelNames: ["workflow", "outcome"] as const,
    buckets: durationBuckets,
    registers: [this.registry],
  });
  readonly activations = new Counter({
    name: "cairn_activations_total",
    help: "Activations (one replay and run of a handler until it ends, parks or stops), by workflow and outcome.",
    labelNames: ["workflow", "outcome"] as const,
    registers: [this.registry],
  });
  readonly activationDuration = new Histogram({
    name: "cairn_activation_duration_seconds",
    help: "Duration of an activation, from claim to end, park or stop, by workflow.",
    labelNames: ["workflow"] as const,
    buckets: durationBuckets,
    registers: [this.registry],
  });
  readonly leaseLosses = new Counter({
    name: "cairn_lease_losses_total",
    help: "Activations stopped because this process lost the run's lease, by workflow.",
    labelNames: ["workflow"] as const,
    registers: [this.registry],
  });
  readonly claimLatency = new Histogram({
    name: "cairn_claim_latency_seconds",
    help: "From the moment a run became due (queued, woken, timer due) to its claim by this process.",
    buckets: durationBuckets,
    registers: [this.registry],
  });
  readonly rpcCalls = new Counter({
    name: "cairn_rpc_requests_total",
    help: "RPCs answered, by method (service/Method) and Connect code (ok, invalid_argument, ...). REST routes count as the RPC they call.",
    labelNames: ["method", "code"] as const,
    registers: [this.registry],
  });
  readonly rpcDuration = new Histogram({
    name: "cairn_rpc_duration_seconds",
    help: "RPC latency from the interceptors' view, by method; for streams, until the stream ends.",
    labelNames: ["method"] as const,
    buckets: callBuckets,
    registers: [this.registry],
  });
  readonly eventsSent = new Counter({
    name: "cairn_events_sent_total",
    help: "Events accepted by SendEvent.",
    registers: [this.registry],
  });
  readonly eventDeliveries = new Counter({
    name: "cairn_event_deliveries_total",
    help: "Runs an event was delivered to inside SendEvent (parked runs waiting on its key).",
    registers: [this.registry],
  });
  readonly batchRuns = new Counter({
    name: "cairn_batch_runs_total",
    help: "Runs a batch (StartBatch) handled in this process, by operation and outcome (done, skipped, failed).",
    labelNames: ["operation", "outcome"] as const,
    registers: [this.registry],
  });

  constructor() {
    const queue = (select: (depth: QueueDepth) => number) => {
      const metrics = this;
      return async function (this: Gauge) {
        this.set(select(await metrics.readQueue()));
      };
    };
    new Gauge({
      name: "cairn_runs_queued",
      help: "Runs queued in the database (all processes), read at scrape time.",
      registers: [this.registry],
      collect: queue((d) => d.queued),
    });
    new Gauge({
      name: "cairn_runs_waiting",
      help: "Runs parked on a wait in the database (all processes), read at scrape time.",
      registers: [this.registry],
      collect: queue((d) => d.waiting),
    });
    new Gauge({
      name: "cairn_queue_oldest_due_seconds",
      help: "How long the oldest due, unclaimed run has waited for a claim (0 when none), read at scrape time.",
      registers: [this.registry],
      collect: queue((d) => d.oldestDueSeconds),
    });
    const pool = this;
    new Gauge({
      name: "cairn_db_pool_connections",
      help: "The PostgreSQL connection pool by state: total, idle, waiting (requests queued for a connection). Absent on PGlite.",
      labelNames: ["state"] as const,
      registers: [this.registry],
      collect() {
        const stats = pool.poolProbe?.();
        if (!stats) return;
        for (const state of ["total", "idle", "waiting"] as const) this.set({ state }, stats[state]);
      },
    });
    // Process CPU, memory, GC and event-loop lag (nodejs_eventloop_lag_*), as prom-client names them.
    collectDefaultMetrics({ register: this.registry });
  }

  /** Where the queue gauges read from (the worker's store), and the pool's counts. */
  observe(probes: { queue: () => Promise<QueueDepth>; pool?: (() => { total: number; idle: number; waiting: number }) | undefined }): void {
    this.queueProbe = probes.queue;
    this.poolProbe = probes.pool;
  }

  private queueRead: Promise<QueueDepth> | undefined;

  /** One query per scrape for the three queue gauges (collected one after another; `exposition` forgets it). */
  private readQueue(): Promise<QueueDepth> {
    const empty = { queued: 0, waiting: 0, oldestDueSeconds: 0 };
    this.queueRead ??= this.queueProbe ? this.queueProbe().catch(() => empty) : Promise.resolve(empty);
    return this.queueRead;
  }

  /** The text exposition for a scrape. */
  async exposition(): Promise<{ contentType: string; body: string }> {
    this.queueRead = undefined;
    return { contentType: this.registry.contentType, body: await this.registry.metrics() };
  }
}
