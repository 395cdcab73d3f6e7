-- Change notifications (0003, 0004) cost one PL/pgSQL call and one probe of
-- run_watchers per inserted row. The group-committed writers insert dozens of
-- journal entries and runs per statement, so inserts now notify once per
-- statement, from a transition table, and only look at the new rows when some
-- process watches anything at all. Status updates keep a row trigger, but a
-- WHEN clause skips the call for updates that leave the status alone.
-- pg_notify already folds identical notices of one transaction into one.
CREATE FUNCTION cairn_notify_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF EXISTS (SELECT 1 FROM run_watchers) THEN
    IF TG_TABLE_NAME = 'journal_entries' THEN
      PERFORM pg_notify('cairn_runs', changed.id::text)
      FROM (SELECT DISTINCT run_id AS id FROM inserted) changed
      WHERE EXISTS (SELECT 1 FROM run_watchers w WHERE w.target = changed.id::text OR w.target = '*');
    ELSE
      PERFORM pg_notify('cairn_runs', changed.id::text)
      FROM (SELECT DISTINCT id FROM inserted) changed
      WHERE EXISTS (SELECT 1 FROM run_watchers w WHERE w.target = changed.id::text OR w.target = '*');
    END IF;
  END IF;
  RETURN NULL;
END;
$$;
--> statement-breakpoint
DROP TRIGGER journal_entries_notify ON journal_entries;
--> statement-breakpoint
CREATE TRIGGER journal_entries_notify AFTER INSERT ON journal_entries
  REFERENCING NEW TABLE AS inserted FOR EACH STATEMENT EXECUTE FUNCTION cairn_notify_inserted();
--> statement-breakpoint
DROP TRIGGER runs_status_notify ON runs;
--> statement-breakpoint
CREATE TRIGGER runs_insert_notify AFTER INSERT ON runs
  REFERENCING NEW TABLE AS inserted FOR EACH STATEMENT EXECUTE FUNCTION cairn_notify_inserted();
--> statement-breakpoint
CREATE TRIGGER runs_status_notify AFTER UPDATE OF status ON runs
  FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status) EXECUTE FUNCTION cairn_notify_run_change();
