-- One run feed per process (server/runs/run-feed.ts) replaces per-waiter
-- registrations: every run created, every status change and every journal
-- entry now sends a `cairn_runs` notice, whoever waits, and each process
-- fans it out in memory. Waiters no longer write run_watchers rows (500
-- AwaitRuns were 500 writes and a second's worth of re-reads), so the table
-- goes. Inserts notify once per statement from the transition table, with
-- the run ids batched (at most 60 per notice: 60 × (63-character namespace
-- + ':' + 36-character id + ',') stays under NOTIFY's 8,000-byte payload).
-- The payload is "<kind> <namespace>:<run id>,..." where kind is 's' (the
-- run was created or its status changed) or 'e' (journal entries were
-- appended): AwaitRun needs only 's', WatchRun both, and WatchRuns streams
-- hear of their own namespace only. pg_notify folds identical payloads of one
-- transaction into one.
CREATE OR REPLACE FUNCTION cairn_notify_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_TABLE_NAME = 'journal_entries' THEN
    PERFORM pg_notify('cairn_runs', 'e ' || string_agg(changed.namespace || ':' || changed.id::text, ','))
    FROM (SELECT namespace, id, (row_number() OVER ()) / 60 AS chunk FROM (SELECT DISTINCT namespace, run_id AS id FROM inserted) d) changed
    GROUP BY changed.chunk;
  ELSE
    PERFORM pg_notify('cairn_runs', 's ' || string_agg(changed.namespace || ':' || changed.id::text, ','))
    FROM (SELECT namespace, id, (row_number() OVER ()) / 60 AS chunk FROM inserted) changed
    GROUP BY changed.chunk;
  END IF;
  RETURN NULL;
END;
$$;
--> statement-breakpoint
-- Status updates: a row trigger (a transition table cannot go with UPDATE OF a column list); the WHEN clause
-- (0007) still skips updates that leave the status alone.
CREATE OR REPLACE FUNCTION cairn_notify_run_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pg_notify('cairn_runs', 's ' || NEW.namespace || ':' || NEW.id::text);
  RETURN NULL;
END;
$$;
--> statement-breakpoint
DROP TABLE "run_watchers" CASCADE;
