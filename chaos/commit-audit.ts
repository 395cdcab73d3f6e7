/**
 * Who committed what, and whether it held the run then: the check that a stale holder (a server paused with
 * SIGSTOP past its lease, then woken with SIGCONT) never commits after another process took its runs.
 *
 * Triggers on the chaos database (installed by the chaos run once the servers have migrated; nothing of this is
 * in Cairn's schema) write one audit row per journal entry inserted and per run that reaches an end status, in
 * the writing transaction, so a row exists only if the write committed. Each row names the writer (the
 * connection's application_name: every server connects as `chaos-<slot>`) and the run's lease holder at that
 * moment (journal appends read the run row FOR SHARE, so no claim can commit between the fence and the row; an
 * ending reads the holder it replaced, OLD.lease_owner). A lease owner id is `host:pid:random`, and the chaos run
 * knows the pid of every incarnation of every slot, so every owner id maps to its slot. A committed write whose run was held by a process of another slot is a write
 * past the fence: a violation. Rows whose run had no holder (CancelRun of a waiting run) say nothing and are
 * skipped.
 *
 * `probe` proves the check can fail, in every run: inside a transaction that is rolled back, it makes another
 * slot's owner the holder of a finished run, inserts a journal entry as a different slot, and hands the audit
 * rows it produced to the same check, which must flag them.
 */
import type pg from "pg";

export interface AuditRow {
  what: "entry" | "ending";
  run_id: string;
  sequence: number | null;
  kind: string;
  writer: string;
  holder: string | null;
  holder_epoch: number | null;
  at: Date;
}

export interface AuditFigures {
  /** Audited journal entries and run endings, with a holder to compare. */
  entries: number;
  endings: number;
  /** Rows without a holder (not an activation's write). */
  unheld: number;
  /** Runs whose audited writes came from more than one holder (taken over mid-run: a kill, a pause, a cut). */
  runsTakenOver: number;
  /** Writes committed by a process that did not hold the run. */
  stale: number;
  /** Runs taken over from a paused server while it slept (see takenOverWhilePaused). */
  takenFromPaused: number;
}

const auditSql = `
  create table if not exists chaos_commit_audit (
    seq bigserial primary key,
    what text not null,
    run_id uuid not null,
    sequence int,
    kind text not null,
    writer text not null,
    holder text,
    holder_epoch int,
    at timestamptz not null default clock_timestamp());

  create or replace function chaos_audit_entry() returns trigger language plpgsql as $$
  begin
    insert into chaos_commit_audit (what, run_id, sequence, kind, writer, holder, holder_epoch)
    select 'entry', new.run_id, new.sequence, new.kind, current_setting('application_name'), r.lease_owner, r.lease_epoch
    from runs r where r.id = new.run_id;
    return null;
  end $$;
  drop trigger if exists chaos_audit_entry on journal_entries;
  create trigger chaos_audit_entry after insert on journal_entries for each row execute function chaos_audit_entry();

  create or replace function chaos_audit_ending() returns trigger language plpgsql as $$
  begin
    insert into chaos_commit_audit (what, run_id, kind, writer, holder, holder_epoch)
    values ('ending', new.id, new.status, current_setting('application_name'), old.lease_owner, old.lease_epoch);
    return null;
  end $$;
  drop trigger if exists chaos_audit_ending on runs;
  create trigger chaos_audit_ending after update of status on runs for each row
    when (old.status not in ('completed', 'failed', 'cancelled') and new.status in ('completed', 'failed', 'cancelled'))
    execute function chaos_audit_ending();`;

/** Installs the audit triggers (after the servers created the tables). */
export async function installCommitAudit(query: (text: string) => Promise<unknown>): Promise<void> {
  await query(auditSql);
}

export async function readAudit(query: <T>(text: string, values?: unknown[]) => Promise<T[]>): Promise<AuditRow[]> {
  return query<AuditRow>(`select what, run_id, sequence, kind, writer, holder, holder_epoch, at from chaos_commit_audit order by seq`);
}

/** The slot of a writer's application_name: `chaos-s1` → `s1`; undefined for other connections. */
function writerSlot(writer: string): string | undefined {
  const match = /^chaos-(s\d+)$/.exec(writer);
  return match?.[1];
}

/** The process id in a lease owner id (`host:pid:random`). */
function ownerPid(owner: string): number | undefined {
  const match = /:(\d+):[^:]*$/.exec(owner);
  return match ? Number(match[1]) : undefined;
}

/**
 * Checks every audited write against the holder of its run at commit. `pidSlots`: the process id of every server
 * incarnation, with its slot.
 */
export function checkCommits(rows: readonly AuditRow[], pidSlots: ReadonlyMap<number, string>): { violations: string[]; figures: AuditFigures } {
  const violations: string[] = [];
  const figures: AuditFigures = { entries: 0, endings: 0, unheld: 0, runsTakenOver: 0, stale: 0, takenFromPaused: 0 };
  const holdersByRun = new Map<string, Set<string>>();
  for (const row of rows) {
    if (row.holder === null) {
      figures.unheld++;
      continue;
    }
    if (row.what === "entry") figures.entries++;
    else figures.endings++;
    let holders = holdersByRun.get(row.run_id);
    if (!holders) holdersByRun.set(row.run_id, (holders = new Set()));
    holders.add(row.holder);
    const writer = writerSlot(row.writer);
    const pid = ownerPid(row.holder);
    const holderSlot = pid === undefined ? undefined : pidSlots.get(pid);
    if (writer === undefined || holderSlot === undefined) {
      violations.push(`commit audit: cannot attribute ${row.what} ${row.run_id}/${row.sequence ?? row.kind}: writer ${row.writer}, holder ${row.holder} (no server had that pid)`);
      continue;
    }
    if (writer !== holderSlot) {
      figures.stale++;
      if (figures.stale <= 20) {
        violations.push(
          `stale commit: server ${writer} committed ${row.what === "entry" ? `journal entry ${row.sequence} (${row.kind})` : `the run's end (${row.kind})`} of run ${row.run_id} ` +
            `at ${row.at.toISOString()} while ${holderSlot} (${row.holder}, epoch ${row.holder_epoch}) held it`,
        );
      }
    }
  }
  for (const holders of holdersByRun.values()) if (holders.size > 1) figures.runsTakenOver++;
  return { violations, figures };
}

/**
 * The check catches a write past the fence: in a transaction that is rolled back, server `writer` journals an entry
 * for a run that `holderOwner` (a process of another slot) holds. True when `checkCommits` flags it.
 */
export async function probe(pool: pg.Pool, runId: string, writer: string, holderOwner: string, pidSlots: ReadonlyMap<number, string>): Promise<boolean> {
  const client = await pool.connect();
  try {
    await client.query("begin");
    await client.query(`update runs set lease_owner = $2 where id = $1`, [runId, holderOwner]);
    await client.query(`select set_config('application_name', $1, true)`, [`chaos-${writer}`]);
    await client.query(`insert into journal_entries (run_id, sequence, namespace, kind, name) values ($1, 1000000, 'default', 'chaos_probe', '')`, [runId]);
    const rows = (await client.query<AuditRow>(`select what, run_id, sequence, kind, writer, holder, holder_epoch, at from chaos_commit_audit where kind = 'chaos_probe'`)).rows;
    return rows.length === 1 && checkCommits(rows, pidSlots).figures.stale === 1;
  } finally {
    await client.query("rollback").catch(() => undefined);
    client.release();
  }
}

/** A server process frozen with SIGSTOP from `from` to `to`, and the running runs it held when it was stopped. */
export interface Pause {
  pid: number;
  from: Date;
  to: Date;
  heldRunIds: readonly string[];
}

/**
 * Runs another process took over from a paused one while it slept: runs it held when it was stopped that got a
 * write under another holder before it woke up. Shows that the pauses made stale holders, whose later writes the
 * fences had to refuse.
 */
export function takenOverWhilePaused(rows: readonly AuditRow[], pauses: readonly Pause[]): number {
  let taken = 0;
  for (const pause of pauses) {
    const held = new Set(pause.heldRunIds);
    const takers = new Set<string>();
    for (const row of rows) {
      if (!held.has(row.run_id) || row.holder === null || row.at < pause.from || row.at > pause.to) continue;
      if (ownerPid(row.holder) !== pause.pid) takers.add(row.run_id);
    }
    taken += takers.size;
  }
  return taken;
}
