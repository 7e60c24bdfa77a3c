-- Accounts, refresh tokens, login throttling and idempotency keys.
--
-- Staff members are users: a staff account's id is the staff member's id. Account changes that
-- follow from staff events (hire, role change, e-mail change, deactivation) are made by a
-- trigger on `events`, in the same transaction as the append, so an account exists exactly
-- when its `StaffHired` event does, and a deactivation disables the account and revokes its
-- refresh tokens atomically. Password hashes never enter the event store: the API stages the
-- hash in `pending_credentials` before the append, and the trigger moves it into `accounts`.

CREATE TABLE accounts
(
    id            uuid PRIMARY KEY,
    email         text        NOT NULL,
    -- argon2id PHC string; NULL means the account cannot log in with a password.
    password_hash text,
    role          text        NOT NULL CHECK (role IN ('platform_admin', 'clinic_admin', 'doctor',
                                                       'nurse', 'receptionist', 'auditor')),
    clinic_id     uuid,
    active        boolean     NOT NULL DEFAULT true,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT accounts_platform_admin_has_no_clinic
        CHECK ((role = 'platform_admin') = (clinic_id IS NULL))
);
CREATE UNIQUE INDEX accounts_email_key ON accounts (lower(email));
CREATE INDEX accounts_clinic_idx ON accounts (clinic_id, id);

CREATE TABLE pending_credentials
(
    staff_id      uuid PRIMARY KEY,
    password_hash text        NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE refresh_tokens
(
    id          uuid PRIMARY KEY,
    account_id  uuid        NOT NULL REFERENCES accounts (id),
    -- All tokens descending from one login; reuse of a spent token revokes the family.
    family_id   uuid        NOT NULL,
    -- SHA-256 of the token; the token itself is never stored.
    token_hash  bytea       NOT NULL UNIQUE,
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,
    used_at     timestamptz,
    revoked_at  timestamptz
);
CREATE INDEX refresh_tokens_account_idx ON refresh_tokens (account_id);
CREATE INDEX refresh_tokens_family_idx ON refresh_tokens (family_id);

CREATE TABLE login_throttle
(
    email_key    text PRIMARY KEY,
    failures     integer     NOT NULL,
    window_start timestamptz NOT NULL,
    locked_until timestamptz
);

CREATE TABLE idempotency_keys
(
    account_id    uuid        NOT NULL,
    key           text        NOT NULL,
    request_hash  bytea       NOT NULL,
    -- NULL while the first request is still running.
    status_code   integer,
    response_body bytea,
    location      text,
    created_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (account_id, key)
);

-- Suspension is read on every authenticated request; the trigger keeps it beside the code.
ALTER TABLE clinic_codes ADD COLUMN suspended boolean NOT NULL DEFAULT false;

CREATE FUNCTION events_sync_accounts() RETURNS trigger
    LANGUAGE plpgsql AS
$$
DECLARE
    v_body  json;
    v_staff uuid;
    v_email text;
BEGIN
    v_body := NEW.payload -> NEW.event_type;
    IF NEW.aggregate_type = 'Staff' THEN
        v_staff := split_part(NEW.aggregate_id, ':', 2)::uuid;
        IF NEW.event_type = 'StaffHired' THEN
            INSERT INTO accounts (id, email, password_hash, role, clinic_id)
            SELECT v_staff, v_body ->> 'email', pc.password_hash, v_body ->> 'role', NEW.tenant_id
            FROM (SELECT 1) AS one
                     LEFT JOIN pending_credentials pc ON pc.staff_id = v_staff
            ON CONFLICT DO NOTHING;
            IF NOT FOUND THEN
                RAISE EXCEPTION 'e-mail % already belongs to an account', v_body ->> 'email'
                    USING ERRCODE = 'CK003';
            END IF;
            DELETE FROM pending_credentials WHERE staff_id = v_staff;
        ELSIF NEW.event_type = 'StaffRoleChanged' THEN
            UPDATE accounts SET role = v_body ->> 'to', updated_at = now() WHERE id = v_staff;
        ELSIF NEW.event_type = 'StaffProfileUpdated' THEN
            v_email := v_body ->> 'email';
            IF v_email IS NOT NULL THEN
                BEGIN
                    UPDATE accounts SET email = v_email, updated_at = now() WHERE id = v_staff;
                EXCEPTION
                    WHEN unique_violation THEN
                        RAISE EXCEPTION 'e-mail % already belongs to an account', v_email
                            USING ERRCODE = 'CK003';
                END;
            END IF;
        ELSIF NEW.event_type = 'StaffDeactivated' THEN
            UPDATE accounts SET active = false, updated_at = now() WHERE id = v_staff;
            UPDATE refresh_tokens SET revoked_at = now()
            WHERE account_id = v_staff AND revoked_at IS NULL;
        ELSIF NEW.event_type = 'StaffReactivated' THEN
            UPDATE accounts SET active = true, updated_at = now() WHERE id = v_staff;
        END IF;
    ELSIF NEW.aggregate_type = 'Clinic' THEN
        IF NEW.event_type = 'ClinicSuspended' THEN
            UPDATE clinic_codes SET suspended = true WHERE clinic_id = NEW.tenant_id;
        ELSIF NEW.event_type = 'ClinicReactivated' THEN
            UPDATE clinic_codes SET suspended = false WHERE clinic_id = NEW.tenant_id;
        END IF;
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER events_sync_accounts
    AFTER INSERT ON events
    FOR EACH ROW
    WHEN (NEW.event_type IN ('StaffHired', 'StaffRoleChanged', 'StaffProfileUpdated',
                             'StaffDeactivated', 'StaffReactivated',
                             'ClinicSuspended', 'ClinicReactivated'))
EXECUTE FUNCTION events_sync_accounts();

REVOKE ALL ON accounts, pending_credentials, refresh_tokens, login_throttle, idempotency_keys FROM PUBLIC;
GRANT SELECT, INSERT, UPDATE ON accounts TO clinic_app;
GRANT SELECT, INSERT, UPDATE, DELETE ON pending_credentials TO clinic_app;
GRANT SELECT, INSERT, UPDATE ON refresh_tokens TO clinic_app;
GRANT SELECT, INSERT, UPDATE, DELETE ON login_throttle, idempotency_keys TO clinic_app;
GRANT UPDATE (suspended) ON clinic_codes TO clinic_app;
