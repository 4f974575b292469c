-- The pool as a non-superuser sees it, and the sessions this role may end: idle in transaction
-- for at least :min_age seconds, client backends of roles that are neither superuser nor
-- replication, never this session; 'young' counts those that will qualify once old enough.
-- One JSON object on one line.
SELECT json_build_object(
  'max_connections', current_setting('max_connections')::int,
  'reserved', current_setting('superuser_reserved_connections')::int,
  'used', (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'),
  'idle_in_transaction',
    (SELECT count(*) FROM pg_stat_activity WHERE state = 'idle in transaction'),
  'young', (
    SELECT count(*)
    FROM pg_stat_activity a
    JOIN pg_roles r ON r.oid = a.usesysid
    WHERE a.state = 'idle in transaction'
      AND a.backend_type = 'client backend'
      AND NOT r.rolsuper AND NOT r.rolreplication
      AND now() - a.state_change < make_interval(secs => :min_age)
  ),
  'sessions', (
    SELECT coalesce(json_agg(s ORDER BY s.idle_s DESC), '[]'::json)
    FROM (
      SELECT a.pid, a.backend_start, a.usename AS "user", a.datname AS database,
             a.application_name AS application, host(a.client_addr) AS client,
             a.xact_start, a.state_change,
             round(extract(epoch FROM now() - a.state_change)::numeric, 1) AS idle_s,
             left(a.query, 200) AS last_query
      FROM pg_stat_activity a
      JOIN pg_roles r ON r.oid = a.usesysid
      WHERE a.state = 'idle in transaction'
        AND a.backend_type = 'client backend'
        AND a.pid <> pg_backend_pid()
        AND NOT r.rolsuper AND NOT r.rolreplication
        AND now() - a.state_change >= make_interval(secs => :min_age)
    ) s
  )
);
