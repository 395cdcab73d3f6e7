-- WatchRun and WatchRuns learn of changes through NOTIFY: every journal entry
-- and every run status change tells listeners (one connection per server
-- process) which run changed; watchers then read the store. Notifications are
-- sent at commit, so a watcher never hears of an uncommitted change.
CREATE FUNCTION cairn_notify_run_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_TABLE_NAME = 'journal_entries' THEN
    PERFORM pg_notify('cairn_runs', NEW.run_id::text);
  ELSIF TG_OP = 'INSERT' OR NEW.status IS DISTINCT FROM OLD.status THEN
    PERFORM pg_notify('cairn_runs', NEW.id::text);
  END IF;
  RETURN NULL;
END;
$$;
--> statement-breakpoint
CREATE TRIGGER journal_entries_notify AFTER INSERT ON journal_entries
  FOR EACH ROW EXECUTE FUNCTION cairn_notify_run_change();
--> statement-breakpoint
CREATE TRIGGER runs_status_notify AFTER INSERT OR UPDATE OF status ON runs
  FOR EACH ROW EXECUTE FUNCTION cairn_notify_run_change();
