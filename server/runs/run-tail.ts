/**
 * One reader per watched run per process. However many WatchRun streams
 * follow a run, a change (from the process's run feed: a local change, the
 * store's notice, or a safety-net snapshot showing something new) costs one
 * run read and one journal read here, shared in a batch with the other
 * tails that changed at the same time (tail-reader.ts), and nothing when it
 * came with its data (this process's own end) or says only what the tail
 * holds (the notices of that end); nothing happens between changes;
 * the streams take what they need from a bounded in-memory window of recent
 * entries, and a stream that fell behind the window catches up from the
 * store on its own, so slow watchers never hold up fast ones or the engine.
 */
import type { JournalEntry } from "../core/journal.js";
import type { Db } from "../store/database.js";
import type { LocalCommits } from "../store/local-commits.js";
import { entryBytes } from "../core/journal-budget.js";
import { listJournalPage } from "../store/journal-page.js";
import { getRun } from "../store/runs/read.js";
import type { RunRow, RunStatus } from "../store/schema.js";
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
  /** A read is running now (not only waiting for the rest of a commit's news to land). */
  private reading = false;
  private again = false;
  /** Some change heard since the last read may have changed the run's row, not only added entries. */
  private rowChanged = true;
  /** Some change heard since the last read said nothing of what it was (a local change without data, a snapshot). */
  private unknownChange = true;
  /** What the store's notices since the last read said: the last new sequence number, the statuses. */
  private noticedSequence = 0;
  private readonly noticedStatuses = new Set<RunStatus>();
  /** This process's own change, told while a read ran: taken, if it still fits, once that read is in. */
  private pendingLocal: { row: RunRow | undefined; entries: readonly JournalEntry[] } | undefined;
  private gapSince: number | undefined;
  /** A store notice that says what changed was heard since the last read. */
  private noticeHeard = false;
  watchers = 0;

  constructor(
    private readonly db: Db,
    readonly namespace: string,
    readonly runId: string,
    private readonly onRead?: () => void,
    /** Reads shared with the process's other tails; absent: every read is this tail's own. */
    private readonly reader?: TailReader,
    /** Runs whose change this process is committing now: a notice of one waits for its telling (local-commits.ts). */
    private readonly commits?: LocalCommits,
  ) {}

  /**
   * News from the feed. This process's own change that came with its data is taken as it is (`take`); other news
   * leads to a read, unless it says what changed and the tail already has that: a safety-net snapshot that shows
   * nothing new, or a store notice of a change this process made and told first (or told while the read waited for
   * the rest of the commit's news to land). A failed read is retried by the next change or the safety net.
   */
  hear(change: RunChange): void {
    if (change.source === "appended") {
      if (!this.take(undefined, change.entries())) this.refresh(true).catch(() => undefined);
      return;
    }
    if (change.source === "local") {
      if (change.row && change.entries && this.take(change.row, change.entries())) return;
      this.refresh().catch(() => undefined);
      return;
    }
    if (change.source === "check") {
      if (change.status !== undefined && change.status === this.run?.status && change.lastSequence <= this.lastSequence) return;
      this.refresh().catch(() => undefined);
      return;
    }
    if (change.kind === "entry") {
      if (change.lastSequence === undefined) this.refresh(true).catch(() => undefined);
      else if (this.refreshing || change.lastSequence > this.lastSequence) {
        this.noticedSequence = Math.max(this.noticedSequence, change.lastSequence);
        this.noticeHeard = true;
        this.schedule(true).catch(() => undefined);
      }
      return;
    }
    if (change.status === undefined) this.refresh().catch(() => undefined);
    else if (this.refreshing || change.status !== this.run?.status) {
      this.noticedStatuses.add(change.status);
      this.noticeHeard = true;
      this.schedule().catch(() => undefined);
    }
  }

  /**
   * This process's own change, with the entries its commit wrote and the run's new row (none: an append, which leaves
   * the row as it was): taken as they are when they follow on from what the tail holds, and every stream told, without
   * a read. False when they do not fit (a gap held back, entries missed before them): then a read must bring them.
   */
  take(row: RunRow | undefined, entries: readonly JournalEntry[]): boolean {
    if (this.gapSince !== undefined || entries.length === 0) return false;
    if (this.reading) {
      // The read may have started before these changes committed: tried, in order, once it is in.
      const pending = this.pendingLocal;
      this.pendingLocal = {
        row: row ?? pending?.row,
        entries: pending ? [...pending.entries, ...entries].sort((a, b) => a.sequence - b.sequence) : entries,
      };
      return true;
    }
    // Past this change already: an append has nothing new; a row may be older than what the tail has, a read decides.
    const last = entries[entries.length - 1]!.sequence;
    if (!row && last <= this.lastSequence) return true;
    if (last < this.lastSequence) return false;
    // Entries the tail has (a read that saw the entries but an older row) are skipped; the rest must follow on.
    let expected = this.lastSequence + 1;
    for (const entry of entries) {
      if (entry.sequence < expected) continue;
      if (entry.sequence !== expected) return false;
      expected++;
    }
    for (const entry of entries) {
      if (entry.sequence <= this.lastSequence) continue;
      this.lastSequence = entry.sequence;
      this.window.push(entry);
      this.windowBytesNow += entryBytes(entry as { result?: unknown; error?: unknown });
    }
    this.trim();
    if (row) this.run = row;
    for (const signal of this.signals) signal.notify();
    return true;
  }

  /** Whether everything heard since the last read is known already (a notice of a change `take` brought). */
  private upToDate(): boolean {
    if (this.unknownChange || this.gapSince !== undefined || this.noticedSequence > this.lastSequence) return false;
    for (const status of this.noticedStatuses) if (status !== this.run?.status) return false;
    return true;
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
    this.unknownChange = true;
    return this.schedule(entriesOnly);
  }

  /** A read soon, unless what was heard meanwhile turns out to be known already (`upToDate`). */
  private schedule(entriesOnly = false): Promise<void> {
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
        if (this.noticeHeard) {
          // This process may be committing the change the notice is of: its telling follows the commit's answer.
          this.noticeHeard = false;
          const committing = this.commits?.settled(this.runId);
          if (committing) await committing;
        }
        // This process's own change, told with its data meanwhile, may have brought all the news said.
        if (this.upToDate()) {
          this.noticedStatuses.clear();
          this.rowChanged = false;
          break;
        }
        const withRun = this.rowChanged;
        this.rowChanged = false;
        this.unknownChange = false;
        this.noticedStatuses.clear();
        this.reading = true;
        try {
          await this.readChanges(withRun);
        } catch (error) {
          // The next change or the safety net reads again, the row too if this read was to.
          this.rowChanged ||= withRun;
          this.unknownChange = true;
          throw error;
        } finally {
          this.reading = false;
        }
        const local = this.pendingLocal;
        this.pendingLocal = undefined;
        // (What the read brought may include it; if it neither includes it nor is followed by it, read again.)
        if (local && local.entries[local.entries.length - 1]!.sequence >= this.lastSequence && !this.take(local.row, local.entries)) {
          this.unknownChange = true;
          this.again = true;
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

  /** A read found a gap in the journal (a lower sequence number not committed yet) and holds back what follows it. */
  get waitingOutGap(): boolean {
    return this.gapSince !== undefined;
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
    private readonly commits?: LocalCommits,
    /** Told when this process starts tailing a run and when it stops (once each, per namespace and run). */
    private readonly onTailed?: (runId: string, tailed: boolean) => void,
  ) {
    this.reader = new TailReader(db);
  }

  /**
   * A tail for the run in `namespace`, read and subscribed (its `run` undefined when no such run is there); call the
   * returned release when the stream ends. One per namespace and run: another tenant asking for the same id gets a
   * tail of its own, which finds nothing.
   */
  async acquire(namespace: string, runId: string): Promise<{ tail: RunTail; signal: ChangeSignal; release: () => void }> {
    const key = `${namespace}:${runId}`;
    let shared = this.tails.get(key);
    if (!shared) {
      const tail = new RunTail(this.db, namespace, runId, () => this.metrics?.waiterReads.inc({ waiter: "watch_run" }), this.reader, this.commits);
      // Subscribed before the first read (in memory, no I/O): a change committed after that read is heard of.
      const unsubscribe = this.feed.subscribe(runId, (_id, change) => tail.hear(change));
      this.onTailed?.(runId, true);
      const ready = (async () => {
        let stopHearing: (() => void) | undefined;
        try {
          // Entries and status changes made elsewhere: the store notifies this process of the namespace's (one row, once).
          stopHearing = await this.feed.hear(namespace, ["s", "e"]);
          await tail.refresh();
        } catch (error) {
          unsubscribe();
          stopHearing?.();
          this.onTailed?.(runId, false);
          throw error;
        }
        return () => {
          unsubscribe();
          stopHearing?.();
          this.onTailed?.(runId, false);
        };
      })();
      shared = { tail, ready };
      this.tails.set(key, shared);
      // A tail that failed to start is not shared: the next watcher tries afresh.
      ready.catch(() => this.tails.delete(key));
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
        if (--tail.watchers === 0 && this.tails.get(key)?.tail === tail) {
          this.tails.delete(key);
          unsubscribe();
        }
      },
    };
  }
}
