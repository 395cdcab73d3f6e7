CREATE TABLE "run_watchers" (
	"process" text NOT NULL,
	"target" text NOT NULL,
	"expires_at" timestamp (3) with time zone NOT NULL,
	CONSTRAINT "run_watchers_process_target_pk" PRIMARY KEY("process","target")
);
--> statement-breakpoint
CREATE INDEX "run_watchers_target_idx" ON "run_watchers" USING btree ("target");--> statement-breakpoint
-- Notify only for runs somebody watches: NOTIFY takes a cluster-wide lock at
-- commit, which unwatched work should not pay for.
CREATE OR REPLACE FUNCTION cairn_notify_run_change() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  changed uuid;
BEGIN
  IF TG_TABLE_NAME = 'journal_entries' THEN
    changed := NEW.run_id;
  ELSIF TG_OP = 'INSERT' OR NEW.status IS DISTINCT FROM OLD.status THEN
    changed := NEW.id;
  ELSE
    RETURN NULL;
  END IF;
  IF EXISTS (SELECT 1 FROM run_watchers WHERE target = changed::text OR target = '*') THEN
    PERFORM pg_notify('cairn_runs', changed::text);
  END IF;
  RETURN NULL;
END;
$$;
