-- The service no longer logs in as the tables' owner (issue 12, finding 11). The API logs in
-- as clinic_app and the projection workers as clinic_worker; only migrations (and the
-- table-swapping `clinic rebuild`) use the owner. A statement that says `RESET ROLE` then
-- stays clinic_app: row-level security holds.
-- Passwords, where the server asks for them, come from CLINIC_APP_DB_PASSWORD and
-- CLINIC_WORKER_DB_PASSWORD (`ALTER ROLE clinic_app PASSWORD '…'` by the operator).
ALTER ROLE clinic_app LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE;
ALTER ROLE clinic_worker LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE;

-- slot_claims and care_links are kept by triggers on `events` only. The triggers now run as
-- the owner (SECURITY DEFINER), and clinic_app may only read the rows: it cannot change or
-- remove another clinic's claim, nor its own, except through the events.
ALTER FUNCTION events_claim_slots() SECURITY DEFINER SET search_path = public;
ALTER FUNCTION events_care_links() SECURITY DEFINER SET search_path = public;
REVOKE INSERT, UPDATE, DELETE ON slot_claims, care_links FROM clinic_app;
ALTER TABLE slot_claims ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant ON slot_claims
    USING (clinic_id = nullif(current_setting('app.clinic_id', true), '')::uuid);
