/**
 * One reader per watched run per process. However many WatchRun streams
 * follow a run, a change (from the process's run feed: a local change, the
 * store's notice, or a safety-net snapshot showing something new) costs one
 * run read and one journal read here, shared in a batch with the other
 * tails that changed at the same time (tail-reader.ts); nothing happens between changes;
 * the streams take what they need from a bounded in-memory window of recent
 * entries, and a stream that fell behind the window catches up from the
 * store on its own, so slow watchers never hold up fast ones or the engine.
 */
import type { JournalEntry } from "../core/journal.js";
import type { Db } from "../store/database.js";
import { entryBytes } from "../core/journal-budget.js";
import { listJournalPage } from "../store/journal-page.js";
import { getRun } from "../store/runs/read.js";
import type { RunRow } from "../store/schema.js";
import type { Metrics } from "../metrics.js";
import { ChangeSignal, type RunChange, type RunFeed } from "./run-feed.js";
import { TailReader } from "./tail-reader.js";

/** Entries kept in memory per watched run: at most this many, and at most `windowBytes` of results and errors. */
const windowSize = 2000;
/** A run journaling large results keeps few of them here; watchers behind the window read the store instead. */
export const windowBytes = 8 * 1024 * 1024;
const pageSize = 500;
/** How long to wait for a lower sequence number to commit before skipping the gap (a failed write). */
const gapPatienceMs = 2000;

export class RunTail {
  /** Contiguous recent entries, ascending; the window's last entry is `lastSequence`. */
  readonly window: JournalEntry[] = [];
  /** The result and error bytes of the entries in `window`. */
  private windowBytesNow = 0;
  lastSequence = 0;
  run: RunRow | undefined;
  private readonly signals = new Set<ChangeSignal>();
  private refreshing: Promise<void> | undefined;
  private again = false;
  /** Some change heard since the last read may have changed the run's row, not only added entries. */
  private rowChanged = true;
  private gapSince: number | undefined;
  watchers = 0;

  constructor(
    private readonly db: Db,
    private readonly namespace: string,
    readonly runId: string,
    private readonly onRead?: () => void,
    /** Reads shared with the process's other tails; absent: every read is this tail's own. */
    private readonly reader?: TailReader,
  ) {}

  /** Whether the feed's news is worth a read: a safety-net snapshot only when it shows something this tail lacks. */
  wants(change: RunChange): boolean {
    if (change.source !== "check") return true;
    return change.status === undefined || change.status !== this.run?.status || change.lastSequence > this.lastSequence;
  }

  listen(signal: ChangeSignal): () => void {
    this.signals.add(signal);
    return () => this.signals.delete(signal);
  }

  /**
   * Reads what changed (coalescing overlapping calls) and tells every stream. `entriesOnly`: all this change brought
   * is new entries (a journal notice), so the run's row is not read again unless another change asked for it.
   */
  refresh(entriesOnly = false): Promise<void> {
    if (!entriesOnly) this.rowChanged = true;
    if (this.refreshing) {
      this.again = true;
      return this.refreshing;
    }
    this.refreshing = (async () => {
      // The notices of one commit (its entries, then its status) arrive together: let them all land before deciding
      // whether the row needs reading, so that a run's end costs one read, not an entries-only read and another.
      await new Promise<void>((resolve) => setImmediate(resolve));
      do {
        this.again = false;
        const withRun = this.rowChanged;
        this.rowChanged = false;
        try {
          await this.readChanges(withRun);
        } catch (error) {
          // The next change or the safety net reads again, the row too if this read was to.
          this.rowChanged ||= withRun;
          throw error;
        }
        for (const signal of this.signals) signal.notify();
      } while (this.again);
    })().finally(() => (this.refreshing = undefined));
    return this.refreshing;
  }

  private async readChanges(withRun: boolean): Promise<void> {
    this.onRead?.();
    // Usually the news is a few entries and a status: read them in a batch with the other tails' reads. A gap being
    // waited out, entries past the batch's share, or a gap in what it brought: this tail's own paged read below.
    if (this.reader && this.gapSince === undefined) {
      const read = await this.reader.read({ namespace: this.namespace, runId: this.runId, afterSequence: this.lastSequence, withRun });
      if (read.complete && read.entries.every((entry, i) => entry.sequence === this.lastSequence + 1 + i)) {
        for (const entry of read.entries) {
          this.lastSequence = entry.sequence;
          this.window.push(entry);
          this.windowBytesNow += entryBytes(entry as { result?: unknown; error?: unknown });
        }
        this.trim();
        if (withRun) this.run = read.run;
        return;
      }
    }
    // The run first: a final status read here guarantees the entries read next include the final entry
    // (both commit together), so a stream that ends on the status has seen everything.
    const run = await getRun(this.db, this.namespace, this.runId);
    for (;;) {
      // Bounded by bytes as well: large results never arrive here more than a window's worth at a time.
      const { entries, hasMore } = await listJournalPage(this.db, this.namespace, this.runId, this.lastSequence, pageSize, windowBytes);
      for (const entry of entries) {
        if (entry.sequence !== this.lastSequence + 1) {
          // A concurrent write with a lower number may not have committed yet: wait a little, not for ever.
          this.gapSince ??= Date.now();
          if (Date.now() - this.gapSince < gapPatienceMs) {
            this.again = true;
            await new Promise((resolve) => setTimeout(resolve, 20));
            break;
          }
        }
        this.gapSince = undefined;
        this.lastSequence = entry.sequence;
        this.window.push(entry);
        this.windowBytesNow += entryBytes(entry as { result?: unknown; error?: unknown });
      }
      this.trim();
      if (!hasMore || this.gapSince !== undefined) break;
    }
    // While a gap is held back, the status waits too: a final status must not end streams before the held entries.
    if (this.gapSince === undefined) this.run = run;
  }

  /** Drops the oldest entries past the count or the byte budget (the newest one always stays). */
  private trim(): void {
    let drop = Math.max(0, this.window.length - windowSize);
    let bytes = this.windowBytesNow;
    for (let i = 0; i < drop; i++) bytes -= entryBytes(this.window[i] as { result?: unknown; error?: unknown });
    while (bytes > windowBytes && drop < this.window.length - 1) {
      bytes -= entryBytes(this.window[drop] as { result?: unknown; error?: unknown });
      drop++;
    }
    if (drop > 0) this.window.splice(0, drop);
    this.windowBytesNow = bytes;
  }

  /** The result and error bytes the window holds now. */
  get bytesHeld(): number {
    return this.windowBytesNow;
  }
}

/** Shares one RunTail per run among this process's watchers. */
export class RunTails {
  private readonly tails = new Map<string, { tail: RunTail; ready: Promise<() => void> }>();
  private readonly reader: TailReader;

  constructor(
    private readonly db: Db,
    private readonly feed: RunFeed,
    private readonly metrics?: Metrics | undefined,
  ) {
    this.reader = new TailReader(db);
  }

  /** A tail for the run, read and subscribed; call the returned release when the stream ends. */
  async acquire(namespace: string, runId: string): Promise<{ tail: RunTail; signal: ChangeSignal; release: () => void }> {
    let shared = this.tails.get(runId);
    if (!shared) {
      const tail = new RunTail(this.db, namespace, runId, () => this.metrics?.waiterReads.inc({ waiter: "watch_run" }), this.reader);
      // Subscribed before the first read (in memory, no I/O): a change committed after that read is heard of.
      const unsubscribe = this.feed.subscribe(runId, (_id, change) => {
        // A failed read is retried by the next change or the safety net (its snapshot still shows what the tail lacks).
        if (tail.wants(change)) tail.refresh(change.source === "notice" && change.kind === "entry").catch(() => undefined);
      });
      const ready = (async () => {
        let stopHearing: (() => void) | undefined;
        try {
          // Entries and status changes made elsewhere: the store notifies this process of the namespace's (one row, once).
          stopHearing = await this.feed.hear(namespace, ["s", "e"]);
          await tail.refresh();
        } catch (error) {
          unsubscribe();
          stopHearing?.();
          throw error;
        }
        return () => {
          unsubscribe();
          stopHearing?.();
        };
      })();
      shared = { tail, ready };
      this.tails.set(runId, shared);
      // A tail that failed to start is not shared: the next watcher tries afresh.
      ready.catch(() => this.tails.delete(runId));
    }
    const { tail, ready } = shared;
    // Counted before waiting, so an early watcher leaving cannot stop the tail under a later one.
    tail.watchers++;
    let unsubscribe: () => void;
    try {
      unsubscribe = await ready;
    } catch (error) {
      tail.watchers--;
      throw error;
    }
    const signal = new ChangeSignal();
    const stopListening = tail.listen(signal);
    return {
      tail,
      signal,
      release: () => {
        stopListening();
        if (--tail.watchers === 0 && this.tails.get(runId)?.tail === tail) {
          this.tails.delete(runId);
          unsubscribe();
        }
      },
    };
  }
}
