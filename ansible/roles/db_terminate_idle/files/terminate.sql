-- End the sessions of :'targets' (the snapshot: JSON [{pid, backend_start}, ...]) that are
-- still the same backend and still qualify (a session that woke up, or another backend under
-- a reused pid, is left alone). The victims are chosen first (a MATERIALIZED CTE), so
-- pg_terminate_backend never runs on a row the other conditions would have dropped.
-- One JSON array on one line: the pids ended.
WITH victims AS MATERIALIZED (
  SELECT a.pid
  FROM pg_stat_activity a
  JOIN pg_roles r ON r.oid = a.usesysid
  JOIN json_to_recordset(:'targets'::json) AS t(pid int, backend_start timestamptz)
    ON t.pid = a.pid AND t.backend_start = a.backend_start
  WHERE a.state = 'idle in transaction'
    AND a.backend_type = 'client backend'
    AND a.pid <> pg_backend_pid()
    AND NOT r.rolsuper AND NOT r.rolreplication
    AND now() - a.state_change >= make_interval(secs => :min_age)
)
SELECT coalesce(json_agg(pid), '[]'::json) FROM victims WHERE pg_terminate_backend(pid);
