-- Requests per credential per time window, shared by every API process on one PostgreSQL database
-- (PGlite runs one process and counts in memory). UNLOGGED: a counter lost in a crash only lets a
-- few requests more through, and a write per request should not cost a WAL flush.
CREATE UNLOGGED TABLE rate_limit_hits (
  key text NOT NULL,
  window_start timestamptz NOT NULL,
  hits integer NOT NULL,
  PRIMARY KEY (key, window_start)
);
