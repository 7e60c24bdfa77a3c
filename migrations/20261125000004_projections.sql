-- Read side: projection checkpoints, event notifications and the read-model tables.
--
-- Read models live in schema `rm`. Each projection's tables are created by a function
-- `rm_create_<projection>(schema)`, so `clinic rebuild` can build a fresh copy in another
-- schema from position zero and swap it in (ALTER TABLE … SET SCHEMA) while reads go on.
-- Every key starts with clinic_id, and row-level security checks it against the
-- per-transaction setting `app.clinic_id` (the API sets it with set_config(…, true)).
-- The API's role, clinic_app, is subject to RLS; the projection workers run as
-- clinic_worker, which bypasses it because it writes every clinic's rows.

CREATE EXTENSION IF NOT EXISTS unaccent;

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'clinic_worker') THEN
        CREATE ROLE clinic_worker NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE BYPASSRLS;
    END IF;
    IF NOT (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) THEN
        EXECUTE format('GRANT clinic_worker TO %I', current_user);
    END IF;
END
$$;

-- `unaccent` is only STABLE; this wrapper (fixed dictionary) may be used in indexes.
CREATE FUNCTION rm_fold(t text) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN lower(public.unaccent('public.unaccent'::regdictionary, coalesce(t, '')));

CREATE TABLE projection_checkpoints
(
    name           text PRIMARY KEY,
    transaction_id xid8        NOT NULL DEFAULT '0',
    position       bigint      NOT NULL DEFAULT 0,
    updated_at     timestamptz NOT NULL DEFAULT now(),
    -- Set when the projection met an event it cannot apply; it stops there until fixed.
    failed_position bigint,
    last_error     text
);
INSERT INTO projection_checkpoints (name)
VALUES ('clinics'), ('staff'), ('patients'), ('appointments');

-- Wake the workers once per appending statement.
CREATE FUNCTION events_notify() RETURNS trigger
    LANGUAGE plpgsql AS
$$
BEGIN
    PERFORM pg_notify('clinic_events', '');
    RETURN NULL;
END
$$;
CREATE TRIGGER events_notify
    AFTER INSERT ON events
    FOR EACH STATEMENT
EXECUTE FUNCTION events_notify();

CREATE SCHEMA rm;

CREATE FUNCTION rm_grant(s text, t text) RETURNS void
    LANGUAGE plpgsql AS
$$
BEGIN
    EXECUTE format('ALTER TABLE %I.%I ENABLE ROW LEVEL SECURITY', s, t);
    EXECUTE format('ALTER TABLE %I.%I FORCE ROW LEVEL SECURITY', s, t);
    EXECUTE format('REVOKE ALL ON %I.%I FROM PUBLIC', s, t);
    EXECUTE format('GRANT SELECT ON %I.%I TO clinic_app', s, t);
    EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE, TRUNCATE ON %I.%I TO clinic_worker', s, t);
END
$$;

CREATE FUNCTION rm_create_clinics(s text) RETURNS void
    LANGUAGE plpgsql AS
$$
BEGIN
    EXECUTE format('CREATE SCHEMA IF NOT EXISTS %I', s);
    EXECUTE format('GRANT USAGE ON SCHEMA %I TO clinic_app, clinic_worker', s);
    EXECUTE format($ddl$
        CREATE TABLE %I.clinics
        (
            clinic_id         uuid PRIMARY KEY,
            name              text        NOT NULL,
            code              text        NOT NULL,
            time_zone         text        NOT NULL,
            plan              text        NOT NULL,
            status            text        NOT NULL,
            slot_minutes      integer     NOT NULL,
            departments       jsonb       NOT NULL DEFAULT '[]',
            staff_count       integer     NOT NULL DEFAULT 0,
            patient_count     integer     NOT NULL DEFAULT 0,
            appointment_count integer     NOT NULL DEFAULT 0,
            registered_at     timestamptz NOT NULL,
            updated_at        timestamptz NOT NULL
        )$ddl$, s);
    PERFORM rm_grant(s, 'clinics');
    -- A clinic sees its own row; the platform admin's transactions (app.platform = 'on')
    -- see every clinic. This table holds no patient data.
    EXECUTE format($p$CREATE POLICY tenant ON %I.clinics
        USING (clinic_id = nullif(current_setting('app.clinic_id', true), '')::uuid
               OR current_setting('app.platform', true) = 'on')$p$, s);
END
$$;

CREATE FUNCTION rm_create_staff(s text) RETURNS void
    LANGUAGE plpgsql AS
$$
BEGIN
    EXECUTE format('CREATE SCHEMA IF NOT EXISTS %I', s);
    EXECUTE format('GRANT USAGE ON SCHEMA %I TO clinic_app, clinic_worker', s);
    EXECUTE format($ddl$
        CREATE TABLE %I.staff
        (
            clinic_id      uuid        NOT NULL,
            staff_id       uuid        NOT NULL,
            name           text        NOT NULL,
            email          text        NOT NULL,
            role           text        NOT NULL,
            department_id  uuid,
            specialty      text,
            licence_number text,
            active         boolean     NOT NULL,
            working_hours  jsonb       NOT NULL DEFAULT '{}',
            time_off       jsonb       NOT NULL DEFAULT '[]',
            hired_at       timestamptz NOT NULL,
            updated_at     timestamptz NOT NULL,
            version        bigint      NOT NULL,
            PRIMARY KEY (clinic_id, staff_id)
        )$ddl$, s);
    EXECUTE format('CREATE INDEX ON %I.staff (clinic_id, role, active)', s);
    EXECUTE format('CREATE INDEX ON %I.staff (clinic_id, department_id)', s);
    PERFORM rm_grant(s, 'staff');
    EXECUTE format($p$CREATE POLICY tenant ON %I.staff
        USING (clinic_id = nullif(current_setting('app.clinic_id', true), '')::uuid)$p$, s);
END
$$;

CREATE FUNCTION rm_create_patients(s text) RETURNS void
    LANGUAGE plpgsql AS
$$
BEGIN
    EXECUTE format('CREATE SCHEMA IF NOT EXISTS %I', s);
    EXECUTE format('GRANT USAGE ON SCHEMA %I TO clinic_app, clinic_worker', s);
    EXECUTE format($ddl$
        CREATE TABLE %I.patients
        (
            clinic_id     uuid        NOT NULL,
            patient_id    uuid        NOT NULL,
            mrn           text        NOT NULL,
            given         text        NOT NULL,
            family        text        NOT NULL,
            -- folded (lower case, no accents) for prefix search
            given_key     text        NOT NULL,
            family_key    text        NOT NULL,
            birth_date    date        NOT NULL,
            sex           text        NOT NULL,
            phone         text,
            phone_digits  text,
            email         text,
            status        text        NOT NULL,
            merged_into   uuid,
            -- the whole record as served by GET /v1/patients/{id}
            record        jsonb       NOT NULL,
            registered_at timestamptz NOT NULL,
            updated_at    timestamptz NOT NULL,
            version       bigint      NOT NULL,
            PRIMARY KEY (clinic_id, patient_id)
        )$ddl$, s);
    EXECUTE format('CREATE UNIQUE INDEX ON %I.patients (clinic_id, mrn)', s);
    EXECUTE format('CREATE INDEX ON %I.patients (clinic_id, family_key text_pattern_ops, given_key, patient_id)', s);
    EXECUTE format('CREATE INDEX ON %I.patients (clinic_id, given_key text_pattern_ops)', s);
    EXECUTE format('CREATE INDEX ON %I.patients (clinic_id, phone_digits text_pattern_ops)', s);
    EXECUTE format('CREATE INDEX ON %I.patients (clinic_id, birth_date)', s);
    PERFORM rm_grant(s, 'patients');
    EXECUTE format($p$CREATE POLICY tenant ON %I.patients
        USING (clinic_id = nullif(current_setting('app.clinic_id', true), '')::uuid)$p$, s);
END
$$;

CREATE FUNCTION rm_create_appointments(s text) RETURNS void
    LANGUAGE plpgsql AS
$$
BEGIN
    EXECUTE format('CREATE SCHEMA IF NOT EXISTS %I', s);
    EXECUTE format('GRANT USAGE ON SCHEMA %I TO clinic_app, clinic_worker', s);
    EXECUTE format($ddl$
        CREATE TABLE %I.appointments
        (
            clinic_id       uuid        NOT NULL,
            appointment_id  uuid        NOT NULL,
            patient_id      uuid        NOT NULL,
            doctor_id       uuid        NOT NULL,
            start_at        timestamptz NOT NULL,
            end_at          timestamptz NOT NULL,
            status          text        NOT NULL,
            -- clinical: not shown to receptionists
            reason          text,
            cancel_reason   text,
            booked_at       timestamptz NOT NULL,
            updated_at      timestamptz NOT NULL,
            version         bigint      NOT NULL,
            PRIMARY KEY (clinic_id, appointment_id)
        )$ddl$, s);
    EXECUTE format('CREATE INDEX ON %I.appointments (clinic_id, doctor_id, start_at)', s);
    EXECUTE format('CREATE INDEX ON %I.appointments (clinic_id, patient_id, start_at)', s);
    EXECUTE format('CREATE INDEX ON %I.appointments (clinic_id, status, start_at)', s);
    EXECUTE format('CREATE INDEX ON %I.appointments (clinic_id, start_at)', s);
    PERFORM rm_grant(s, 'appointments');
    EXECUTE format($p$CREATE POLICY tenant ON %I.appointments
        USING (clinic_id = nullif(current_setting('app.clinic_id', true), '')::uuid)$p$, s);
END
$$;

SELECT rm_create_clinics('rm');
SELECT rm_create_staff('rm');
SELECT rm_create_patients('rm');
SELECT rm_create_appointments('rm');

GRANT SELECT ON projection_checkpoints TO clinic_app;
GRANT SELECT, UPDATE ON projection_checkpoints TO clinic_worker;
GRANT SELECT ON events TO clinic_worker;
-- The rebuild creates its schemas and swaps tables as the owner (clinic rebuild), not as the
-- worker role.
