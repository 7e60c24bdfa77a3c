-- Logout, deactivation and a new password take effect on access tokens at once (issue 12,
-- finding 12). An access token is accepted only if it was issued (`iat`, whole seconds) at or
-- after its account's `tokens_valid_after`. Setting it ends every access token issued before;
-- new ones (a log-in, a refresh) are issued with `iat` no earlier than it. A new cut-off is a
-- whole second past both the moment it records and the previous cut-off, so it also ends a
-- token issued in that same second, or issued at the previous cut-off.

ALTER TABLE accounts ADD COLUMN tokens_valid_after timestamptz;

-- The same trigger as in 20261125000003_accounts.sql, except that a deactivation also sets
-- `tokens_valid_after` (from the event's own time, the service clock's).
CREATE OR REPLACE FUNCTION events_sync_accounts() RETURNS trigger
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
            -- Access tokens issued up to the deactivation stay dead after a reactivation.
            UPDATE accounts
            SET active             = false,
                updated_at         = now(),
                tokens_valid_after = greatest(tokens_valid_after,
                                              date_trunc('second', (NEW.metadata ->> 'occurred_at')::timestamptz))
                                     + interval '1 second'
            WHERE id = v_staff;
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

