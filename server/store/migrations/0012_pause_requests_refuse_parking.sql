-- As in 0005, and a pause request (PauseRun on a running run) refuses the parking like a cancel request.
-- Parks a run on event waits (and timers): takes every event key's lock in the order given (sorted by the
-- caller), answers 'event' without parking when one of them already has an event this run has not consumed,
-- 'lost' when the fence no longer holds, else parks the run with its waits and answers 'parked'.
-- p_waits: [{name, kind, event_type, correlation_id, deadline, lookback_from}], in the order they were started.
CREATE OR REPLACE FUNCTION cairn_park_on_events(
  p_run_id uuid, p_owner text, p_epoch integer, p_namespace text, p_lock_keys text[],
  p_waiting_on jsonb, p_available_at timestamptz, p_waits jsonb)
RETURNS text
LANGUAGE plpgsql VOLATILE AS $$
#variable_conflict use_column
DECLARE
  v_key text;
  v_wait jsonb;
  v_parked uuid;
BEGIN
  FOREACH v_key IN ARRAY p_lock_keys LOOP
    PERFORM pg_advisory_xact_lock(hashtextextended(v_key, 0));
  END LOOP;
  FOR v_wait IN SELECT value FROM jsonb_array_elements(p_waits) LOOP
    IF v_wait->>'kind' = 'event' AND EXISTS (
      SELECT 1 FROM events e
      WHERE e.namespace = p_namespace AND e.event_type = v_wait->>'event_type' AND e.correlation_id = v_wait->>'correlation_id'
        AND (e.target_run_id IS NULL OR e.target_run_id = p_run_id)
        AND (v_wait->>'lookback_from' IS NULL OR e.created_at >= (v_wait->>'lookback_from')::timestamptz)
        AND NOT EXISTS (SELECT 1 FROM journal_entries j WHERE j.run_id = p_run_id AND j.event_id = e.id)) THEN
      RETURN 'event';
    END IF;
  END LOOP;
  UPDATE runs SET status = 'waiting', waiting_on = p_waiting_on, available_at = p_available_at,
                  lease_owner = NULL, lease_expires_at = NULL, updated_at = now()
  WHERE id = p_run_id AND lease_owner = p_owner AND lease_epoch = p_epoch AND cancel_requested_at IS NULL AND pause_requested_at IS NULL
  RETURNING id INTO v_parked;
  IF v_parked IS NULL THEN
    RETURN 'lost';
  END IF;
  DELETE FROM waits WHERE run_id = p_run_id;
  INSERT INTO waits (run_id, name, namespace, kind, event_type, correlation_id, deadline)
  SELECT p_run_id, w->>'name', p_namespace, w->>'kind', w->>'event_type', w->>'correlation_id', (w->>'deadline')::timestamptz
  FROM jsonb_array_elements(p_waits) AS w;
  RETURN 'parked';
END $$;
