-- Two `AFTER INSERT` triggers on `events` instead of six, none with a `WHEN` clause (issue 11).
--
-- PostgreSQL reads a row trigger's `WHEN` clause back from its stored node tree (`stringToNode`)
-- and compiles it again for every statement that inserts into the table; an array of event
-- types is stored as the bytes of each text, one token each. The six clauses cost every append
-- about 23 µs of PostgreSQL's CPU, whatever its event type: 3,000 appends of an event no
-- trigger handles, in one transaction, 59–64 µs each with the six triggers against 36–38 µs
-- without them. One trigger without a clause that tests the event type in PL/pgSQL costs
-- 3–5 µs. A registration spends about 0.55 ms of PostgreSQL's CPU in all.
--
-- The bodies are those of the six trigger functions they replace, unchanged, each under the
-- test its `WHEN` clause made. They stay in two functions because they ran with two kinds of
-- rights, and still do:
-- - `events_as_caller` with the rights of the role that appends (as `events_claim_registries`,
--   `events_count_merges` and `events_sync_accounts` did): `clinic_app` may write the
--   registries, the counters and the accounts these touch; a role that may not (the billing
--   process manager's) still fails if it appends such an event;
-- - `events_as_owner` with the owner's (as `events_care_links`, `events_claim_slots` and
--   `events_clinic_plans` did): `clinic_app` may only read `care_links` and `slot_claims`.
-- Row triggers fire in the order of their names, so the caller's runs first, as before: a
-- clinic's registration claims its code (`clinic_codes`) before its plan is written to that
-- row. Within each function the parts keep the order of the old triggers' names.

CREATE FUNCTION events_as_caller() RETURNS trigger
    LANGUAGE plpgsql
AS $$
BEGIN
    -- Was `events_claim_registries`.
    IF NEW.event_type IN ('ClinicRegistered', 'PatientRegistered') THEN
        DECLARE
            v_code text;
            v_mrn  text;
        BEGIN
            IF NEW.event_type = 'ClinicRegistered' THEN
                v_code := NEW.payload -> 'ClinicRegistered' ->> 'code';
                INSERT INTO clinic_codes (code, clinic_id) VALUES (v_code, NEW.tenant_id)
                ON CONFLICT DO NOTHING;
                IF NOT FOUND THEN
                    RAISE EXCEPTION 'clinic code % is already registered', v_code
                        USING ERRCODE = 'CK001';
                END IF;
            ELSIF NEW.event_type = 'PatientRegistered' THEN
                v_mrn := NEW.payload -> 'PatientRegistered' ->> 'mrn';
                INSERT INTO patient_mrns (clinic_id, mrn, patient_id)
                VALUES (NEW.tenant_id, v_mrn, NEW.aggregate_id)
                ON CONFLICT DO NOTHING;
                IF NOT FOUND THEN
                    RAISE EXCEPTION 'MRN % is already assigned in this clinic', v_mrn
                        USING ERRCODE = 'CK002';
                END IF;
            END IF;
        END;
    END IF;

    -- Was `events_count_merges`.
    IF NEW.event_type = 'PatientMerged' THEN
        UPDATE mrn_counters SET patients = patients - 1 WHERE clinic_id = NEW.tenant_id;
    END IF;

    -- Was `events_sync_accounts`.
    IF NEW.event_type IN ('StaffHired', 'StaffRoleChanged', 'StaffProfileUpdated', 'StaffDeactivated',
                          'StaffReactivated', 'ClinicSuspended', 'ClinicReactivated') THEN
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
        END;
    END IF;

    RETURN NULL;
END
$$;

CREATE FUNCTION events_as_owner() RETURNS trigger
    LANGUAGE plpgsql
    SECURITY DEFINER
    SET search_path TO 'public'
AS $$
BEGIN
    -- Was `events_care_links`.
    IF NEW.event_type IN ('AppointmentBooked', 'AppointmentCancelled', 'AppointmentMarkedNoShow') THEN
        DECLARE
            v_body        json;
            v_appointment uuid;
        BEGIN
            v_body := NEW.payload -> NEW.event_type;
            v_appointment := split_part(NEW.aggregate_id, ':', 2)::uuid;
            IF NEW.event_type = 'AppointmentBooked' THEN
                INSERT INTO care_links (clinic_id, appointment_id, doctor_id, patient_id, grants, booked_at)
                VALUES (NEW.tenant_id, v_appointment, (v_body ->> 'doctor_id')::uuid,
                        (v_body ->> 'patient_id')::uuid, true, (NEW.metadata ->> 'occurred_at')::timestamptz);
            ELSE
                UPDATE care_links SET grants = false
                WHERE clinic_id = NEW.tenant_id AND appointment_id = v_appointment;
            END IF;
        END;
    END IF;

    -- Was `events_claim_slots`.
    IF NEW.event_type IN ('AppointmentBooked', 'AppointmentRescheduled', 'AppointmentCancelled',
                          'AppointmentMarkedNoShow', 'AppointmentCompleted') THEN
        DECLARE
            v_body        json;
            v_appointment uuid;
            v_slot        json;
            v_range       tstzrange;
            v_doctor      uuid;
            v_patient     uuid;
            v_constraint  text;
        BEGIN
            v_body := NEW.payload -> NEW.event_type;
            v_appointment := split_part(NEW.aggregate_id, ':', 2)::uuid;
            IF NEW.event_type IN ('AppointmentBooked', 'AppointmentRescheduled') THEN
                v_slot := CASE WHEN NEW.event_type = 'AppointmentBooked' THEN v_body -> 'slot' ELSE v_body -> 'to' END;
                v_range := tstzrange((v_slot ->> 'start')::timestamptz, (v_slot ->> 'end')::timestamptz, '[)');
                IF NEW.event_type = 'AppointmentRescheduled' THEN
                    SELECT doctor_id, patient_id INTO v_doctor, v_patient FROM slot_claims
                    WHERE clinic_id = NEW.tenant_id AND appointment_id = v_appointment;
                END IF;
                BEGIN
                    IF NEW.event_type = 'AppointmentBooked' THEN
                        v_doctor := (v_body ->> 'doctor_id')::uuid;
                        v_patient := (v_body ->> 'patient_id')::uuid;
                        INSERT INTO slot_claims (clinic_id, appointment_id, doctor_id, patient_id, during)
                        VALUES (NEW.tenant_id, v_appointment, v_doctor, v_patient, v_range);
                    ELSE
                        UPDATE slot_claims SET during = v_range
                        WHERE clinic_id = NEW.tenant_id AND appointment_id = v_appointment;
                    END IF;
                EXCEPTION
                    WHEN exclusion_violation THEN
                        GET STACKED DIAGNOSTICS v_constraint = CONSTRAINT_NAME;
                        -- The conflicting ranges (never who holds them) go to the caller.
                        RAISE EXCEPTION USING
                            ERRCODE = 'CK004',
                            MESSAGE = CASE WHEN v_constraint = 'slot_claims_patient_free'
                                           THEN 'patient-busy' ELSE 'doctor-busy' END,
                            DETAIL = (SELECT coalesce(json_agg(json_build_object(
                                                'start', lower(c.during), 'end', upper(c.during))
                                                ORDER BY lower(c.during)), '[]')::text
                                      FROM slot_claims c
                                      WHERE c.clinic_id = NEW.tenant_id
                                        AND c.appointment_id <> v_appointment
                                        AND c.during && v_range
                                        AND CASE WHEN v_constraint = 'slot_claims_patient_free'
                                                 THEN c.patient_id = v_patient ELSE c.doctor_id = v_doctor END);
                END;
            ELSIF NEW.event_type IN ('AppointmentCancelled', 'AppointmentMarkedNoShow', 'AppointmentCompleted') THEN
                DELETE FROM slot_claims WHERE clinic_id = NEW.tenant_id AND appointment_id = v_appointment;
            END IF;
        END;
    END IF;

    -- Was `events_clinic_plans`.
    IF NEW.aggregate_type = 'Clinic'
       AND NEW.event_type IN ('ClinicRegistered', 'ClinicPlanChanged', 'ModuleEnabled', 'ModuleDisabled') THEN
        DECLARE
            v_body json;
        BEGIN
            v_body := NEW.payload -> NEW.event_type;
            IF NEW.event_type = 'ClinicRegistered' THEN
                UPDATE clinic_codes
                SET plan          = plan_of_stored(v_body ->> 'plan'),
                    trial_ends_at = trial_end_of_registration(v_body, NEW.metadata),
                    modules       = CASE
                                        WHEN v_body -> 'modules' IS NULL THEN '{appointments}'
                                        ELSE ARRAY(SELECT json_array_elements_text(v_body -> 'modules'))
                        END
                WHERE clinic_id = NEW.tenant_id;
            ELSIF NEW.event_type = 'ClinicPlanChanged' THEN
                -- No plan change leads to a trial, so any change ends one.
                UPDATE clinic_codes
                SET plan          = plan_of_stored(v_body ->> 'to'),
                    trial_ends_at = NULL
                WHERE clinic_id = NEW.tenant_id;
            ELSIF NEW.event_type = 'ModuleEnabled' THEN
                UPDATE clinic_codes
                SET modules = array_append(array_remove(modules, v_body ->> 'module'), v_body ->> 'module')
                WHERE clinic_id = NEW.tenant_id;
            ELSIF NEW.event_type = 'ModuleDisabled' THEN
                UPDATE clinic_codes
                SET modules = array_remove(modules, v_body ->> 'module')
                WHERE clinic_id = NEW.tenant_id;
            END IF;
        END;
    END IF;

    RETURN NULL;
END
$$;

DROP TRIGGER events_care_links ON events;
DROP TRIGGER events_claim_registries ON events;
DROP TRIGGER events_claim_slots ON events;
DROP TRIGGER events_clinic_plans ON events;
DROP TRIGGER events_count_merges ON events;
DROP TRIGGER events_sync_accounts ON events;
DROP FUNCTION events_care_links();
DROP FUNCTION events_claim_registries();
DROP FUNCTION events_claim_slots();
DROP FUNCTION events_clinic_plans();
DROP FUNCTION events_count_merges();
DROP FUNCTION events_sync_accounts();

CREATE TRIGGER events_as_caller AFTER INSERT ON events FOR EACH ROW EXECUTE FUNCTION events_as_caller();
CREATE TRIGGER events_as_owner AFTER INSERT ON events FOR EACH ROW EXECUTE FUNCTION events_as_owner();
