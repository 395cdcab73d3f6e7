import type { JournalEntry } from "../core/journal.js";

/**
 * Journals of runs parked by this process, each tagged with the epoch it was
 * written under. Another process's claim bumps the epoch, so a journal is used
 * only by the claim that directly follows its parking. Bounded by total
 * entries, oldest dropped first; a miss costs one journal read.
 */
export class ParkedJournals {
  private readonly journals = new Map<string, { epoch: number; entries: JournalEntry[] }>();
  private size = 0;

  constructor(private readonly maxEntries: number) {}

  remember(runId: string, epoch: number, entries: JournalEntry[]): void {
    this.drop(runId);
    if (entries.length > this.maxEntries / 10) return;
    this.journals.set(runId, { epoch, entries });
    this.size += entries.length;
    for (const [oldest, kept] of this.journals) {
      if (this.size <= this.maxEntries) break;
      this.journals.delete(oldest);
      this.size -= kept.entries.length;
    }
  }

  has(runId: string, epoch: number): boolean {
    return this.journals.get(runId)?.epoch === epoch;
  }

  take(runId: string, epoch: number): JournalEntry[] | undefined {
    const kept = this.journals.get(runId);
    this.drop(runId);
    return kept?.epoch === epoch ? kept.entries : undefined;
  }

  private drop(runId: string): void {
    const kept = this.journals.get(runId);
    if (!kept) return;
    this.journals.delete(runId);
    this.size -= kept.entries.length;
  }
}
