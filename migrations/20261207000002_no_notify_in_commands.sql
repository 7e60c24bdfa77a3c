-- The workers are no longer woken by a trigger on `events` (issue 11).
--
-- `events_notify` sent `NOTIFY clinic_events` from every appending statement, inside the
-- command's transaction. PostgreSQL serialises the commits of transactions that have sent a
-- `NOTIFY` on one database-wide lock, held until the commit is flushed: every command's commit
-- waited for the one before it (pgbench, 32 clients, one insert per transaction: about 7,000
-- tx/s without a `NOTIFY`, 3,100 with one). The service now sends the `NOTIFY` after the
-- commit, one for all the commands that committed meanwhile (`commands::Wake`); events written
-- any other way (by hand, by a restore) are found by the workers' polling.
DROP TRIGGER events_notify ON events;
DROP FUNCTION events_notify();
