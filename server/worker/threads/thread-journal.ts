/**
 * A workflow thread's own journal writer, on PostgreSQL: the thread appends its runs' entries over its own small pool,
 * in the same fenced statement as the main thread's writer (store/journal-insert.ts), so a step's entry goes from the
 * code that produced it to the database and back without a message to the main thread and its reply (each woke the
 * other thread, and the main thread's time is every run's). Many activations' entries share a statement: it goes
 * when the thread falls idle (`gather`), once every activation the last answers resumed has reached its next write.
 *
 * If the thread dies with a statement in flight, the statement commits or not on its own; the fence (the run's lease
 * owner and epoch) decides, as for the main thread's writes. PGlite has one connection, the main thread's: there the
 * thread sends its appends to the main thread instead (thread-host.ts).
 */
// Failed attempts are told whoever tails the run: the main thread logs them (executor.ts, `logFailedAttempt`).
import { isFailedAttempt, type NewEntry } from "../../core/journal.js";
import { Batcher, type Gather } from "../../store/batcher.js";
import { type Append, insertEntries } from "../../store/journal-insert.js";
import { openPool, type PoolOptions } from "../../store/pool.js";
import type { CommittedEntry, FromThread } from "./protocol.js";

export interface ThreadJournalOptions extends PoolOptions {
  /** Connections of the thread's pool, and statements in flight at once. */
  connections: number;
}

interface Queued {
  activation: number;
  append: Append;
}

/** What a write answers: its commit time, null when the fence no longer held (nothing written), undefined when taken back. */
export type WriteAnswer = Date | null | undefined;

export class ThreadJournal {
  private readonly batcher: Batcher<Queued, WriteAnswer>;

  private statements = 0;

  /**
   * `tell`: the thread's messages to the main thread (queued until the thread is idle; the gather runs at that point,
   * just before they go): a statement with entries of runs this process tails (`tailed`, by activation) is announced
   * before it goes and reported once it settled, so that their watchers here are told its entries instead of reading
   * them (workflow-threads.ts). Other runs' entries do not cross (a watcher that comes meanwhile reads them on the
   * store's notice), but for the failed attempts the main thread logs.
   */
  constructor(options: ThreadJournalOptions, gather: Gather, tell: (message: FromThread) => void, tailed: (activation: number) => boolean) {
    // (The thread's connections close when it stops; pg closes idle ones after 10 s.)
    const pool = openPool(options, options.connections);
    const query = async <R>(text: string, values: unknown[], name: string) => (await pool.query({ text, values, name })).rows as R[];
    const write = async (items: Queued[]): Promise<WriteAnswer[]> => {
      const statement = ++this.statements;
      // Decided once, before the statement goes: a run tailed from now on hears of this one from the store.
      const told = items.map((item) => tailed(item.activation));
      const announced = told.includes(true);
      if (announced) tell({ t: "committing", statement, ids: items.filter((_, i) => told[i]).map((item) => item.activation) });
      const entries: CommittedEntry[] = [];
      try {
        const answers = await insertEntries(query, items.map((item) => item.append));
        answers.forEach((createdAt, i) => {
          const { activation, append } = items[i] as Queued;
          if (createdAt && (told[i] || isFailedAttempt(append.entry))) entries.push({ id: activation, sequence: append.sequence, entry: append.entry, createdAt: createdAt.getTime() });
        });
        return answers;
      } finally {
        if (announced || entries.length > 0) tell({ t: "committed", statement, entries });
      }
    };
    this.batcher = new Batcher(write, { maxInFlight: options.connections });
    this.batcher.gatherWith(gather);
  }

  /** Resolves once the entry committed (its `created_at`), or with null when its fence no longer holds. */
  write(activation: number, append: Append): Promise<WriteAnswer> {
    return this.batcher.submit({ activation, append });
  }

  /**
   * Takes back the activation's entries no statement has carried yet, when they are the last it appended (sequences
   * up to `nextSequence` − 1): the main thread writes them with the run's end, in one statement. Their writes answer
   * undefined. Anything else (none queued, or a gap) takes nothing back.
   */
  takeBack(activation: number, nextSequence: number): NewEntry[] {
    const queued = this.batcher.queued().filter((item) => item.activation === activation);
    if (queued.length === 0) return [];
    const tail = queued.every((item, i) => item.append.sequence === nextSequence - queued.length + i);
    if (!tail) return [];
    return this.batcher.withdraw((item) => item.activation === activation, undefined).map((item) => item.append.entry);
  }
}
