/**
 * The store as the rest of the server holds it: the database, and the group
 * commits that share one statement among concurrent writers (batcher.ts) —
 * run inserts, run endings, journal appends. The batchers are instances owned
 * here, one set per store, made when the store is opened.
 */
import { Batcher, type Gather } from "./batcher.js";
import type { Database, Db } from "./database.js";
import { JournalWriter } from "./journal-writer.js";
import { LocalCommits } from "./local-commits.js";
import { finishRuns, insertRuns, type RunFinish, type RunInsert } from "./runs/rows.js";
import type { RunRow } from "./schema.js";

export class Store {
  readonly db: Db;
  /** CreateRun and child creation: concurrent inserts share one statement. */
  readonly runInserts: Batcher<RunInsert, RunRow | undefined>;
  /** Runs ending together share one statement (status, waits dropped, last entry journaled). */
  readonly runEndings: Batcher<RunFinish, RunRow | undefined>;
  /** Journal appends of every activation in this process. */
  readonly journal: JournalWriter;
  /** Runs whose change a statement of this process is committing now (watchers here wait for its telling). */
  readonly commits = new LocalCommits();

  constructor(readonly database: Database) {
    const db = database.db;
    this.db = db;
    this.runInserts = new Batcher((items) => insertRuns(db, items));
    this.runEndings = new Batcher((items) => this.commits.around(items.map((item) => item.runId), () => finishRuns(db, items)));
    this.journal = new JournalWriter(db, {}, this.commits);
  }

  /** How every group commit gathers its items (batcher.ts); workflow threads hold a batch until their turn is over. */
  gatherWith(gather: Gather): void {
    this.runInserts.gatherWith(gather);
    this.runEndings.gatherWith(gather);
    this.journal.gatherWith(gather);
  }
}
