-- The store's run notices carry what changed, so that a waiter that already
-- knows it reads nothing: a journal notice names each run's last new sequence
-- number ("e <namespace>:<run id>:<sequence>,..."), a status notice the new
-- status ("s <namespace>:<run id>:<status>,..."). A process that executes a run
-- tells its own waiters of the run's end with the final row and entries
-- (run-feed.ts, `publishLocal`); the notices of that same commit then arrive
-- for nothing, and a watch stream's tail or an AwaitRun no longer reads the run
-- again to learn it. Gating on registration (0021) is unchanged.
--
-- 60 items per notice still fit NOTIFY's 8,000-byte payload: 60 × (63-character
-- namespace + ':' + 36-character id + ':' + 10 characters + ',') = 6,720 bytes.
--
-- A process of an earlier version reads "<namespace>:<run id>:<x>" as namespace
-- "<namespace>:<run id>" and run id "<x>", which nobody waits on: until it is
-- replaced, its waiters hear of changes made elsewhere through its safety net
-- (every 5 s) instead of at once. Nothing is lost.
CREATE OR REPLACE FUNCTION cairn_notify_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF EXISTS (SELECT 1 FROM run_watchers) THEN
    IF TG_TABLE_NAME = 'journal_entries' THEN
      PERFORM pg_notify('cairn_runs', 'e ' || string_agg(changed.namespace || ':' || changed.id::text || ':' || changed.last_sequence, ','))
      FROM (
        SELECT d.namespace, d.id, d.last_sequence, (row_number() OVER ()) / 60 AS chunk
        FROM (SELECT namespace, run_id AS id, max(sequence) AS last_sequence FROM inserted GROUP BY namespace, run_id) d
        WHERE EXISTS (SELECT 1 FROM run_watchers w WHERE w.target = 'e:' || d.namespace)
      ) changed
      GROUP BY changed.chunk;
    ELSE
      PERFORM pg_notify('cairn_runs', 's ' || string_agg(changed.namespace || ':' || changed.id::text || ':' || changed.status, ','))
      FROM (
        SELECT i.namespace, i.id, i.status, (row_number() OVER ()) / 60 AS chunk
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
CREATE OR REPLACE FUNCTION cairn_notify_run_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF EXISTS (SELECT 1 FROM run_watchers WHERE target = 's:' || NEW.namespace) THEN
    PERFORM pg_notify('cairn_runs', 's ' || NEW.namespace || ':' || NEW.id::text || ':' || NEW.status);
  END IF;
  RETURN NULL;
END;
$$;
