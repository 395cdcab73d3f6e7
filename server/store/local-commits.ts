/**
 * Changes to runs that this process is committing right now. Once such a commit is answered, this process tells its
 * own waiters of the change with its data (run-feed.ts, `publishLocal`), so that they read nothing. But the store's
 * notice of the same commit comes on another connection, the listener's, and often lands first: a watcher that read
 * on it would read what it is about to be told. So a watcher that hears a notice of a run with a commit open here
 * waits, briefly, for the commits open at that moment to settle (`settled`), and reads only what the tellings did
 * not bring. A commit that fails settles too, with nothing told: the watcher then reads, as it would have.
 * If the process dies mid-commit, nothing is told and nothing waits any more.
 */

/** How long a watcher waits at most for a commit here to settle (a statement stuck on a lock, a stalled database). */
const settleCapMs = 1000;

class OpenCommit {
  private release!: () => void;
  readonly settled = new Promise<void>((resolve) => (this.release = resolve));

  constructor(readonly runIds: readonly string[]) {}

  end(): void {
    this.release();
  }
}

export class LocalCommits {
  private readonly open = new Map<string, OpenCommit | OpenCommit[]>();

  /**
   * Marks `runIds` as being committed here until the returned function is called: after the commit, once its
   * tellings are out (or it failed). Calling it again does nothing.
   */
  begin(runIds: readonly string[]): () => void {
    const commit = new OpenCommit(runIds);
    for (const runId of runIds) {
      const others = this.open.get(runId);
      this.open.set(runId, others === undefined ? commit : Array.isArray(others) ? [...others, commit] : [others, commit]);
    }
    let ended = false;
    return () => {
      if (ended) return;
      ended = true;
      for (const runId of commit.runIds) this.close(runId, commit);
      commit.end();
    };
  }

  /**
   * Runs `write`, a statement that commits changes to `runIds`, with them marked as being committed. The mark stays
   * until the promise callbacks its answer resumed have run: the callers' tellings are in by then.
   */
  async around<R>(runIds: readonly string[], write: () => Promise<R>): Promise<R> {
    const end = this.begin(runIds);
    try {
      return await write();
    } finally {
      setImmediate(end);
    }
  }

  /** Settles once every commit to `runId` open here now has (at most `settleCapMs` later); undefined if none is open. */
  settled(runId: string): Promise<void> | undefined {
    const open = this.open.get(runId);
    if (open === undefined) return undefined;
    const all = Array.isArray(open) ? Promise.all(open.map((c) => c.settled)).then(() => undefined) : open.settled;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const cap = new Promise<void>((resolve) => (timer = setTimeout(resolve, settleCapMs)));
    return Promise.race([all, cap]).finally(() => clearTimeout(timer));
  }

  /** Runs with a commit open here (for tests). */
  get size(): number {
    return this.open.size;
  }

  private close(runId: string, commit: OpenCommit): void {
    const open = this.open.get(runId);
    if (open === commit) this.open.delete(runId);
    else if (Array.isArray(open)) {
      const rest = open.filter((c) => c !== commit);
      if (rest.length === 0) this.open.delete(runId);
      else this.open.set(runId, rest.length === 1 ? rest[0]! : rest);
    }
  }
}
