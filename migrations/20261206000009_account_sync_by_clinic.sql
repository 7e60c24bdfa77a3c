-- The account a staff event changes must be of the event's clinic (issue 15, the review of
-- every UPDATE with two clinics present). The trigger found the account by the stream's staff
-- id alone: an event appended to clinic A's stream `A:{id of B's staff}` would have changed
-- B's account (role, e-mail, deactivation) and revoked its refresh tokens. The commands never
-- write such a stream (another clinic's staff is not found there), but the database should
-- not depend on it: every account update now names the clinic, and the refresh tokens are
-- revoked only when the account was.
--
-- Otherwise the same function as in 20261205000004_tokens_valid_after.sql.
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
            UPDATE accounts SET role = v_body ->> 'to', updated_at = now()
            WHERE id = v_staff AND clinic_id = NEW.tenant_id;
        ELSIF NEW.event_type = 'StaffProfileUpdated' THEN
            v_email := v_body ->> 'email';
            IF v_email IS NOT NULL THEN
                BEGIN
                    UPDATE accounts SET email = v_email, updated_at = now()
                    WHERE id = v_staff AND clinic_id = NEW.tenant_id;
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
            WHERE id = v_staff AND clinic_id = NEW.tenant_id;
            IF FOUND THEN
                UPDATE refresh_tokens SET revoked_at = now()
                WHERE account_id = v_staff AND revoked_at IS NULL;
            END IF;
        ELSIF NEW.event_type = 'StaffReactivated' THEN
            UPDATE accounts SET active = true, updated_at = now()
            WHERE id = v_staff AND clinic_id = NEW.tenant_id;
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
