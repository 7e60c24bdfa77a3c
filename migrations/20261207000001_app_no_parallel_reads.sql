-- The service's reads never start parallel workers (issue 11). A page is at most 101 rows,
-- but a generic plan (`LIMIT $n`) assumes a tenth of the clinic: at 50,000 appointments in a
-- clinic the appointment list was planned as a Gather Merge over a parallel index scan, and
-- starting the worker took 6-7 ms of a 9.7 ms read (0.3 ms serial; `EXPLAIN ANALYZE` as
-- clinic_app, on the benchmark's database). On a server that answers many requests at once,
-- the cores are already shared among them. Roles are the cluster's, and a database made from
-- a template carries no per-database role settings: this is set on the role.
ALTER ROLE clinic_app SET max_parallel_workers_per_gather = 0;
