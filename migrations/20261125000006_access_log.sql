-- Access log (HIPAA-style): who read which patient's data, when, from where, and whether it
-- was allowed. One row per request to an endpoint that reads a patient's data, including the
-- refused ones (403 `denied`, 404 `not_found`).
--
-- The log is append-only for the service: clinic_app may INSERT and SELECT, never UPDATE,
-- DELETE or TRUNCATE. Row-level security scopes both to the transaction's clinic
-- (`app.clinic_id`), like the read models.

CREATE TABLE access_log
(
    clinic_id  uuid        NOT NULL,
    id         bigint GENERATED ALWAYS AS IDENTITY,
    at         timestamptz NOT NULL DEFAULT now(),
    actor_id   uuid        NOT NULL,
    role       text        NOT NULL,
    -- NULL when the request named no patient the server could tell (e.g. a refused
    -- appointment read).
    patient_id uuid,
    endpoint   text        NOT NULL,
    outcome    text        NOT NULL CHECK (outcome IN ('allowed', 'denied', 'not_found')),
    request_id text        NOT NULL DEFAULT '',
    client_ip  inet,
    PRIMARY KEY (clinic_id, id)
);
CREATE INDEX access_log_clinic_at_idx ON access_log (clinic_id, at DESC, id DESC);
CREATE INDEX access_log_clinic_patient_idx ON access_log (clinic_id, patient_id, at DESC);
CREATE INDEX access_log_clinic_actor_idx ON access_log (clinic_id, actor_id, at DESC);

ALTER TABLE access_log ENABLE ROW LEVEL SECURITY;
ALTER TABLE access_log FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_read ON access_log FOR SELECT
    USING (clinic_id = nullif(current_setting('app.clinic_id', true), '')::uuid);
CREATE POLICY tenant_append ON access_log FOR INSERT
    WITH CHECK (clinic_id = nullif(current_setting('app.clinic_id', true), '')::uuid);

REVOKE ALL ON access_log FROM PUBLIC;
GRANT SELECT, INSERT ON access_log TO clinic_app;
