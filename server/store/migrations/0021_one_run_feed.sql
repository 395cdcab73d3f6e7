-- One run feed per process (server/runs/run-feed.ts) replaces per-waiter
-- registrations. run_watchers rows now name a kind of change and a namespace
-- ('s:<namespace>': runs created and status changes; 'e:<namespace>': journal
-- entries), registered once per process when its first waiter there needs
-- notices from elsewhere, not per waiter or per run. Waiters fan out from the
-- feed in memory. Old per-run and '*' rows are dropped (their processes
-- re-register under the new scheme when they start).
--
-- Notices stay gated on registration: a notifying commit takes a cluster-wide
-- lock held through its WAL flush, so notifying commits serialize (16 clients
-- inserting one row each: ~18,000 TPS without a NOTIFY, ~4,000 with one on this
-- machine). Work nobody waits on (a W1 run awaited where it executes) must not
-- pay that.
--
-- Inserts notify once per statement from the transition table, with the run
-- ids batched (at most 60 per notice: 60 × (63-character namespace + ':' +
-- 36-character id + ',') stays under NOTIFY's 8,000-byte payload), as
-- "<kind> <namespace>:<run id>,..." with kind 's' or 'e'. pg_notify folds
-- identical payloads of one transaction into one.
DELETE FROM run_watchers WHERE target NOT LIKE 's:%' AND target NOT LIKE 'e:%';
--> statement-breakpoint
CREATE OR REPLACE FUNCTION cairn_notify_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF EXISTS (SELECT 1 FROM run_watchers) THEN
    IF TG_TABLE_NAME = 'journal_entries' THEN
      PERFORM pg_notify('cairn_runs', 'e ' || string_agg(changed.namespace || ':' || changed.id::text, ','))
      FROM (
        SELECT d.namespace, d.id, (row_number() OVER ()) / 60 AS chunk
        FROM (SELECT DISTINCT namespace, run_id AS id FROM inserted) d
        WHERE EXISTS (SELECT 1 FROM run_watchers w WHERE w.target = 'e:' || d.namespace)
      ) changed
      GROUP BY changed.chunk;
    ELSE
      PERFORM pg_notify('cairn_runs', 's ' || string_agg(changed.namespace || ':' || changed.id::text, ','))
      FROM (
        SELECT i.namespace, i.id, (row_number() OVER ()) / 60 AS chunk
        FROM inserted i
        WHERE EXISTS (SELECT 1 FROM run_watchers w WHERE w.target = 's:' || i.namespace)
      ) changed
      GROUP BY changed.chunk;
    END IF;
  END IF;
  RETURN NULL;
END;
$$;
--> statement-breakpoint
-- Status updates: a row trigger (a transition table cannot go with UPDATE OF a column list); the WHEN clause
-- (0007) still skips updates that leave the status alone.
CREATE OR REPLACE FUNCTION cairn_notify_run_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF EXISTS (SELECT 1 FROM run_watchers WHERE target = 's:' || NEW.namespace) THEN
    PERFORM pg_notify('cairn_runs', 's ' || NEW.namespace || ':' || NEW.id::text);
  END IF;
  RETURN NULL;
END;
$$;
