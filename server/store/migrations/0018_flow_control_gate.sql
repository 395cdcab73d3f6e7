-- Flow control's gate (docs/flow-control.md). Every claim of a run turns its status into 'running' in one UPDATE
-- (server/store/runs/rows.ts); for runs with a concurrency key, a rate limit or a namespace quota this BEFORE trigger
-- admits or holds each row as that UPDATE reaches it, so every path that starts a run is gated and the claim stays
-- one statement. A held row keeps its old status and gets `held_by`; the claim's RETURNING leaves it out.
--
-- Serialisation: a try-lock per key (never a wait, so claims cannot deadlock on each other); a key another claim is
-- admitting right now is skipped and stays due for the next poll. PL/pgSQL takes a fresh snapshot per statement, so
-- the counts after the lock see every committed claim. Counting is cheap: at most `limit` index entries
-- (runs_concurrency_running_idx, runs_namespace_running_idx, runs_rate_starts_idx). A count that reaches the limit
-- is taken again FOR SHARE: that waits for a transaction ending one of those runs right now, so a hold never
-- misses the release that the ending transaction's wake (below) would otherwise not see.
CREATE FUNCTION cairn_flow_gate() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  v_count integer;
  v_now timestamptz;
  v_oldest timestamptz;
BEGIN
  IF NEW.concurrency_limit IS NOT NULL THEN
    IF NOT pg_try_advisory_xact_lock(hashtextextended('cairn.flow.c:' || NEW.namespace || '/' || NEW.workflow_name || '/' || NEW.concurrency_key, 0)) THEN
      RETURN OLD;
    END IF;
    SELECT count(*) INTO v_count FROM runs
      WHERE namespace = NEW.namespace AND workflow_name = NEW.workflow_name AND concurrency_key = NEW.concurrency_key
        AND status = 'running' AND concurrency_limit IS NOT NULL;
    IF v_count >= NEW.concurrency_limit THEN
      SELECT count(*) INTO v_count FROM (SELECT 1 FROM runs
        WHERE namespace = NEW.namespace AND workflow_name = NEW.workflow_name AND concurrency_key = NEW.concurrency_key
          AND status = 'running' AND concurrency_limit IS NOT NULL FOR SHARE) s;
      IF v_count >= NEW.concurrency_limit THEN
        OLD.available_at := NULL; OLD.held_by := 'concurrency'; OLD.updated_at := now();
        RETURN OLD;
      END IF;
    END IF;
  END IF;

  IF NEW.namespace_max_running IS NOT NULL THEN
    IF NOT pg_try_advisory_xact_lock(hashtextextended('cairn.flow.ns:' || NEW.namespace, 0)) THEN
      RETURN OLD;
    END IF;
    SELECT count(*) INTO v_count FROM runs
      WHERE namespace = NEW.namespace AND status = 'running' AND namespace_max_running IS NOT NULL;
    IF v_count >= NEW.namespace_max_running THEN
      SELECT count(*) INTO v_count FROM (SELECT 1 FROM runs
        WHERE namespace = NEW.namespace AND status = 'running' AND namespace_max_running IS NOT NULL FOR SHARE) s;
      IF v_count >= NEW.namespace_max_running THEN
        OLD.available_at := NULL; OLD.held_by := 'namespace'; OLD.updated_at := now();
        RETURN OLD;
      END IF;
    END IF;
  END IF;

  -- Only a run's first start counts against its rate; a re-claim after a wait is not a start. The start instant is
  -- taken under the key's lock (clock_timestamp, not the transaction's start) so the recorded starts of one key are
  -- in lock order and the window below is exact.
  IF NEW.rate_limit IS NOT NULL AND OLD.started_at IS NULL THEN
    IF NOT pg_try_advisory_xact_lock(hashtextextended('cairn.flow.r:' || NEW.namespace || '/' || NEW.workflow_name || '/' || NEW.rate_key, 0)) THEN
      RETURN OLD;
    END IF;
    v_now := clock_timestamp();
    SELECT started_at INTO v_oldest FROM runs
      WHERE namespace = NEW.namespace AND workflow_name = NEW.workflow_name AND rate_key = NEW.rate_key
        AND rate_limit IS NOT NULL AND started_at IS NOT NULL
        AND started_at > v_now - NEW.rate_period_ms * interval '1 millisecond'
      ORDER BY started_at DESC OFFSET NEW.rate_limit - 1 LIMIT 1;
    IF FOUND THEN
      -- `limit` starts already inside the window: due again when the oldest of them leaves it.
      OLD.available_at := v_oldest + NEW.rate_period_ms * interval '1 millisecond' + interval '1 millisecond';
      OLD.held_by := 'rate'; OLD.updated_at := now();
      RETURN OLD;
    END IF;
    NEW.started_at := v_now;
  END IF;
  NEW.held_by := NULL;
  RETURN NEW;
END;
$$;
--> statement-breakpoint
CREATE TRIGGER runs_flow_gate BEFORE UPDATE OF status ON runs
  FOR EACH ROW WHEN (NEW.status = 'running' AND OLD.status <> 'running'
    AND (NEW.concurrency_limit IS NOT NULL OR NEW.rate_limit IS NOT NULL OR NEW.namespace_max_running IS NOT NULL))
  EXECUTE FUNCTION cairn_flow_gate();
--> statement-breakpoint
-- The release: a run that stops running (completes, fails, is cancelled, times out, parks, pauses, is requeued
-- after its lease lapsed or handed back) or ends without having run frees its place, in the same transaction as
-- that status change, whichever path made it. It wakes the first held run of its key (priority, then age) and
-- tells the workers (cairn_wake). SKIP LOCKED: two runs ending at once wake two different held runs. A woken run
-- is not a reservation: it is gated again at its claim, and held again if someone else took the place first.
CREATE FUNCTION cairn_flow_release() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  v_woken integer := 0;
  v_n integer;
BEGIN
  IF NEW.concurrency_limit IS NOT NULL THEN
    UPDATE runs SET available_at = now(), held_by = NULL, updated_at = now()
      WHERE id IN (SELECT id FROM runs
        WHERE held_by = 'concurrency' AND available_at IS NULL
          AND namespace = NEW.namespace AND workflow_name = NEW.workflow_name AND concurrency_key = NEW.concurrency_key
        ORDER BY priority DESC, created_at LIMIT 1 FOR UPDATE SKIP LOCKED);
    GET DIAGNOSTICS v_n = ROW_COUNT;
    v_woken := v_woken + v_n;
  END IF;
  IF NEW.namespace_max_running IS NOT NULL THEN
    UPDATE runs SET available_at = now(), held_by = NULL, updated_at = now()
      WHERE id IN (SELECT id FROM runs
        WHERE held_by = 'namespace' AND available_at IS NULL AND namespace = NEW.namespace
        ORDER BY priority DESC, created_at LIMIT 1 FOR UPDATE SKIP LOCKED);
    GET DIAGNOSTICS v_n = ROW_COUNT;
    v_woken := v_woken + v_n;
  END IF;
  IF v_woken > 0 THEN
    PERFORM pg_notify('cairn_wake', '');
  END IF;
  RETURN NULL;
END;
$$;
--> statement-breakpoint
CREATE TRIGGER runs_flow_release AFTER UPDATE OF status ON runs
  FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status
    AND (OLD.status = 'running' OR (NEW.status IN ('completed', 'failed', 'cancelled') AND OLD.status NOT IN ('completed', 'failed', 'cancelled')))
    AND (NEW.concurrency_limit IS NOT NULL OR NEW.namespace_max_running IS NOT NULL))
  EXECUTE FUNCTION cairn_flow_release();
