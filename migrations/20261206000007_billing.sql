-- The billing process manager (issue 14). It tails the event log in commit order, like the
-- projections, with its own checkpoint row (`billing`), and in the same transaction that moves
-- the checkpoint it appends the draft invoices of the completed (and charged no-show)
-- appointments it read. It runs as `clinic_billing`, which may read and append events and move
-- checkpoints, and nothing else: no read model, no registry, no account.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'clinic_billing') THEN
        CREATE ROLE clinic_billing NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS;
    END IF;
    IF NOT (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) THEN
        EXECUTE format('GRANT clinic_billing TO %I', current_user);
    END IF;
END
$$;

GRANT SELECT, INSERT ON events TO clinic_billing;
GRANT SELECT, UPDATE ON projection_checkpoints TO clinic_billing;

INSERT INTO projection_checkpoints (name) VALUES ('billing');

-- The workers' login runs the process manager: it switches to this role (SET ROLE) on the
-- process manager's own connection, as the workers switch to clinic_worker.
GRANT clinic_billing TO clinic_worker;
