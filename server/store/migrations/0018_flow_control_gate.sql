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
-- The admission decision for one run about to start: 'admit' (with the start instant for a rate-limited first
-- start), 'skip' (another transaction is admitting on one of its keys right now: leave it due), or the gate that
-- holds it ('concurrency', 'namespace', 'rate' with the instant it is due again).
CREATE FUNCTION cairn_flow_admission(r runs, first_start boolean, OUT verdict text, OUT due timestamptz, OUT started timestamptz)
LANGUAGE plpgsql AS $$
DECLARE
  v_count integer;
  v_oldest timestamptz;
BEGIN
  verdict := 'admit';
  IF r.concurrency_limit IS NOT NULL THEN
    IF NOT pg_try_advisory_xact_lock(hashtextextended('cairn.flow.c:' || r.namespace || '/' || r.workflow_name || '/' || r.concurrency_key, 0)) THEN
      verdict := 'skip'; RETURN;
    END IF;
    SELECT count(*) INTO v_count FROM runs
      WHERE namespace = r.namespace AND workflow_name = r.workflow_name AND concurrency_key = r.concurrency_key
        AND status = 'running' AND concurrency_limit IS NOT NULL;
    IF v_count >= r.concurrency_limit THEN
      SELECT count(*) INTO v_count FROM (SELECT 1 FROM runs
        WHERE namespace = r.namespace AND workflow_name = r.workflow_name AND concurrency_key = r.concurrency_key
          AND status = 'running' AND concurrency_limit IS NOT NULL FOR SHARE) s;
      IF v_count >= r.concurrency_limit THEN
        verdict := 'concurrency'; RETURN;
      END IF;
    END IF;
  END IF;

  IF r.namespace_max_running IS NOT NULL THEN
    IF NOT pg_try_advisory_xact_lock(hashtextextended('cairn.flow.ns:' || r.namespace, 0)) THEN
      verdict := 'skip'; RETURN;
    END IF;
    SELECT count(*) INTO v_count FROM runs
      WHERE namespace = r.namespace AND status = 'running' AND namespace_max_running IS NOT NULL;
    IF v_count >= r.namespace_max_running THEN
      SELECT count(*) INTO v_count FROM (SELECT 1 FROM runs
        WHERE namespace = r.namespace AND status = 'running' AND namespace_max_running IS NOT NULL FOR SHARE) s;
      IF v_count >= r.namespace_max_running THEN
        verdict := 'namespace'; RETURN;
      END IF;
    END IF;
  END IF;

  -- Only a run's first start counts against its rate; a re-claim after a wait is not a start. The start instant is
  -- taken under the key's lock (clock_timestamp, not the transaction's start) so the recorded starts of one key are
  -- in lock order and the window below is exact.
  IF r.rate_limit IS NOT NULL AND first_start THEN
    IF NOT pg_try_advisory_xact_lock(hashtextextended('cairn.flow.r:' || r.namespace || '/' || r.workflow_name || '/' || r.rate_key, 0)) THEN
      verdict := 'skip'; RETURN;
    END IF;
    started := clock_timestamp();
    SELECT s.started_at INTO v_oldest FROM runs s
      WHERE s.namespace = r.namespace AND s.workflow_name = r.workflow_name AND s.rate_key = r.rate_key
        AND s.rate_limit IS NOT NULL AND s.started_at IS NOT NULL
        AND s.started_at > started - r.rate_period_ms * interval '1 millisecond'
      ORDER BY s.started_at DESC OFFSET r.rate_limit - 1 LIMIT 1;
    IF FOUND THEN
      -- `limit` starts already inside the window: due again when the oldest of them leaves it.
      verdict := 'rate';
      due := v_oldest + r.rate_period_ms * interval '1 millisecond' + interval '1 millisecond';
      started := NULL;
      RETURN;
    END IF;
  END IF;
END;
$$;
--> statement-breakpoint
-- The claim: a held row keeps its old values (status, lease, epoch) and gets held_by and its new available_at.
CREATE FUNCTION cairn_flow_gate() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  a record;
BEGIN
  a := cairn_flow_admission(NEW, OLD.started_at IS NULL);
  IF a.verdict = 'skip' THEN
    RETURN OLD;
  ELSIF a.verdict <> 'admit' THEN
    OLD.available_at := a.due; OLD.held_by := a.verdict; OLD.updated_at := now();
    RETURN OLD;
  END IF;
  IF a.started IS NOT NULL THEN NEW.started_at := a.started; END IF;
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
-- Eager start (CreateRun inserting the run already claimed): the same decision; a run not admitted is inserted
-- QUEUED and unclaimed instead (held, or due now when skipped), and CreateRun sees it was not claimed.
CREATE FUNCTION cairn_flow_gate_insert() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  a record;
BEGIN
  a := cairn_flow_admission(NEW, true);
  IF a.verdict = 'admit' THEN
    IF a.started IS NOT NULL THEN NEW.started_at := a.started; END IF;
    RETURN NEW;
  END IF;
  NEW.status := 'queued'; NEW.lease_owner := NULL; NEW.lease_epoch := 0; NEW.lease_expires_at := NULL;
  NEW.activation_count := 0; NEW.started_at := NULL;
  IF a.verdict <> 'skip' THEN
    NEW.available_at := a.due; NEW.held_by := a.verdict;
  END IF;
  RETURN NEW;
END;
$$;
--> statement-breakpoint
CREATE TRIGGER runs_flow_gate_insert BEFORE INSERT ON runs
  FOR EACH ROW WHEN (NEW.status = 'running'
    AND (NEW.concurrency_limit IS NOT NULL OR NEW.rate_limit IS NOT NULL OR NEW.namespace_max_running IS NOT NULL))
  EXECUTE FUNCTION cairn_flow_gate_insert();
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
