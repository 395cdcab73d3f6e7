/**
 * What the runs service works with: the store, the workflows this process
 * knows, the worker that executes runs here, and the change feed watchers
 * follow. The transports (Connect services, REST, CLI through the API) hold a
 * `RunsDeps` and call the functions in this folder; none of them touches the
 * store itself.
 */
import type { Metrics } from "../metrics.js";
import type { Store } from "../store/store.js";
import type { Worker } from "../worker/worker.js";
import type { WorkflowRegistry } from "../workflows/registry.js";
import type { RunFeed } from "./run-feed.js";
import type { RunTails } from "./run-tail.js";

export interface RunsDeps {
  store: Store;
  registry: WorkflowRegistry;
  worker: Worker;
  feed: RunFeed;
  tails: RunTails;
  leaseMs: number;
  maxInputBytes: number;
  /** CAIRN_NAMESPACE_MAX_RUNNING, stamped on each run this process creates (absent: no quota). */
  namespaceMaxRunning?: number | undefined;
  maxEventBytes: number;
  /** Caps on page sizes (CAIRN_MAX_LIST_RUNS_PAGE_SIZE, CAIRN_MAX_HISTORY_PAGE_SIZE). */
  maxListRunsPageSize: number;
  maxHistoryPageSize: number;
  /** CAIRN_MAX_HISTORY_PAGE_BYTES: a history page's result and error JSON, in all (at least one entry per page). */
  maxHistoryPageBytes: number;
  /** Absent in tests that do not look at metrics. */
  metrics?: Metrics | undefined;
}

/** Who calls and until when: every runs function is scoped to the caller's namespace and ends with its signal. */
export interface Call {
  namespace: string;
  /** Aborted when the call ends: deadline passed, client gone, server draining. */
  signal: AbortSignal;
  /**
   * Throws when the call's deadline has passed (the transport knows how it says so). Called before each
   * write, so a call past its deadline stores nothing more; other aborts let in-flight writes finish.
   */
  throwIfDeadlinePassed(): void;
}
