-- SendEvent delivers the event to the runs parked on its key in its own transaction: each such run gets its
-- event_received entry at once, instead of being woken to claim itself, look the event up and journal it (one
-- claim, one read and one commit later). Up to p_claim_limit of those runs whose workflow the sending process
-- serves are also claimed for it, so that it starts them without a claim of its own; the others are queued for
-- any process (NOTIFY cairn_wake).
--
-- It journals what the run's next activation would have journaled. A parked run had nothing resolvable at its
-- quiet point (parking checks for events under the key locks, and an event sent later is delivered here), and
-- an event outranks every other resolution there, so the event is the one outcome that point gets. If the run
-- waits on this key under several names, the wait that started first takes it, as the activation's order does.
--
-- The runs are locked first (in id order, like every multi-row locker of runs) and their waits read in a later
-- statement, with a fresh snapshot: nobody can park, claim or wake a locked run, so the waits read are the ones
-- it is parked on. cairn_send_event (0005) stays for processes that do not deliver yet.
CREATE FUNCTION cairn_deliver_event(
  p_lock_key text, p_id uuid, p_namespace text, p_event_type text, p_correlation_id text,
  p_payload jsonb, p_target_run_id uuid, p_idempotency_key text,
  p_owner text, p_lease_ms integer, p_claim_limit integer, p_workflow_names text[])
RETURNS TABLE (event_id uuid, deduplicated boolean, matched_run_ids uuid[], claimed jsonb)
LANGUAGE plpgsql VOLATILE AS $$
#variable_conflict use_column
DECLARE
  v_inserted uuid;
  v_existing uuid;
  v_locked uuid[];
  v_matched uuid[];
  v_sequences integer[];
  v_names text[];
  v_servable boolean[];
  v_claim uuid[];
  v_claimed jsonb;
  v_queued integer;
BEGIN
  PERFORM pg_advisory_xact_lock(hashtextextended(p_lock_key, 0));
  INSERT INTO events (id, namespace, event_type, correlation_id, payload, target_run_id, idempotency_key)
  VALUES (p_id, p_namespace, p_event_type, p_correlation_id, p_payload, p_target_run_id, p_idempotency_key)
  ON CONFLICT DO NOTHING
  RETURNING id INTO v_inserted;
  IF v_inserted IS NULL THEN
    SELECT e.id INTO v_existing FROM events e WHERE e.namespace = p_namespace AND e.idempotency_key = p_idempotency_key;
    RETURN QUERY SELECT coalesce(v_existing, p_id), true, '{}'::uuid[], '[]'::jsonb;
    RETURN;
  END IF;

  SELECT coalesce(array_agg(l.id), '{}') INTO v_locked FROM (
    SELECT r.id FROM runs r
    WHERE r.status = 'waiting'
      AND r.id IN (SELECT w.run_id FROM waits w
                   WHERE w.namespace = p_namespace AND w.kind = 'event'
                     AND w.event_type = p_event_type AND w.correlation_id = p_correlation_id
                     AND (p_target_run_id IS NULL OR w.run_id = p_target_run_id))
    ORDER BY r.id
    FOR UPDATE OF r) l;
  IF cardinality(v_locked) = 0 THEN
    RETURN QUERY SELECT p_id, false, '{}'::uuid[], '[]'::jsonb;
    RETURN;
  END IF;

  WITH chosen AS (
    SELECT DISTINCT ON (r.id) r.id AS run_id, w.name, r.workflow_name
    FROM runs r JOIN waits w ON w.run_id = r.id
    WHERE r.id = ANY(v_locked) AND r.status = 'waiting'
      AND w.kind = 'event' AND w.event_type = p_event_type AND w.correlation_id = p_correlation_id
    -- Start order costs a walk of the run's journal, so it is looked up only for a run that waits on this key
    -- under more than one name.
    ORDER BY r.id,
             CASE WHEN EXISTS (SELECT 1 FROM waits o
                               WHERE o.run_id = r.id AND o.name <> w.name AND o.kind = 'event'
                                 AND o.event_type = p_event_type AND o.correlation_id = p_correlation_id)
                  THEN (SELECT min(j.sequence) FROM journal_entries j
                        WHERE j.run_id = r.id AND j.name = w.name AND j.kind = 'event_wait_started') END NULLS LAST,
             w.name),
  written AS (
    INSERT INTO journal_entries (run_id, sequence, namespace, kind, name, result, attempt, started_at,
                                 event_type, correlation_id, event_id)
    SELECT c.run_id, coalesce((SELECT max(j.sequence) FROM journal_entries j WHERE j.run_id = c.run_id), 0) + 1,
           p_namespace, 'event_received', c.name, p_payload, 1, now(), p_event_type, p_correlation_id, p_id
    FROM chosen c
    RETURNING run_id, sequence, name)
  SELECT coalesce(array_agg(w.run_id ORDER BY w.run_id), '{}'),
         coalesce(array_agg(w.sequence ORDER BY w.run_id), '{}'),
         coalesce(array_agg(w.name ORDER BY w.run_id), '{}'),
         coalesce(array_agg(c.workflow_name = ANY(p_workflow_names) ORDER BY w.run_id), '{}')
  INTO v_matched, v_sequences, v_names, v_servable
  FROM written w JOIN chosen c ON c.run_id = w.run_id;

  -- The next activation replays to the same quiet point and parks again on whatever it still waits for.
  DELETE FROM waits WHERE run_id = ANY(v_matched);

  SELECT coalesce(array_agg(s.id), '{}') INTO v_claim FROM (
    SELECT u.id FROM unnest(v_matched, v_servable) AS u(id, servable)
    WHERE p_owner IS NOT NULL AND u.servable
    ORDER BY u.id
    LIMIT greatest(p_claim_limit, 0)) s;
  WITH claimed AS (
    UPDATE runs r SET status = 'running', lease_owner = p_owner, lease_epoch = r.lease_epoch + 1,
           lease_expires_at = now() + p_lease_ms * interval '1 millisecond', activation_count = r.activation_count + 1,
           started_at = coalesce(r.started_at, now()), waiting_on = NULL, available_at = NULL, updated_at = now()
    WHERE r.id = ANY(v_claim)
    RETURNING r.*)
  SELECT coalesce(jsonb_agg(jsonb_build_object('run', to_jsonb(c), 'sequence', s.sequence, 'name', s.name, 'at', now(),
                                           'payload', p_payload)), '[]')
  INTO v_claimed
  FROM claimed c JOIN unnest(v_matched, v_sequences, v_names) AS s(id, sequence, name) ON s.id = c.id;

  -- The epoch moves too: a process that kept the run's journal when it parked it must not take that copy,
  -- which lacks the entry written here, for the whole journal.
  UPDATE runs SET status = 'queued', available_at = now(), waiting_on = NULL, lease_epoch = lease_epoch + 1, updated_at = now()
  WHERE id = ANY(v_matched) AND NOT (id = ANY(v_claim));
  GET DIAGNOSTICS v_queued = ROW_COUNT;
  IF v_queued > 0 THEN
    -- Delivered at commit, to every server process.
    PERFORM pg_notify('cairn_wake', '');
  END IF;
  RETURN QUERY SELECT p_id, false, v_matched, v_claimed;
END $$;
