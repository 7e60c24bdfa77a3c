-- Scheduling: a doctor is never double-booked, and a patient never holds two overlapping
-- active appointments in a clinic, even when requests race across API processes.
--
-- The consistency boundary is a claim atomic with the event append: the trigger below claims
-- the appointment's time range in `slot_claims` in the same transaction that appends
-- `AppointmentBooked` / `AppointmentRescheduled`, and releases it with the event that ends
-- the appointment (cancel, no-show, complete). Exclusion constraints refuse overlapping
-- claims, so of two racing bookings one commits and the other's append fails with nothing
-- written. A booking that dies half way is rolled back with its claim: nothing stays blocked.
-- Reschedule is one UPDATE of the claim: the new range is claimed and the old released in the
-- same statement, or neither.

CREATE EXTENSION IF NOT EXISTS btree_gist;

CREATE TABLE slot_claims
(
    clinic_id      uuid      NOT NULL,
    appointment_id uuid      NOT NULL,
    doctor_id      uuid      NOT NULL,
    patient_id     uuid      NOT NULL,
    during         tstzrange NOT NULL CHECK (NOT isempty(during)),
    PRIMARY KEY (clinic_id, appointment_id),
    CONSTRAINT slot_claims_doctor_free
        EXCLUDE USING gist (clinic_id WITH =, doctor_id WITH =, during WITH &&),
    CONSTRAINT slot_claims_patient_free
        EXCLUDE USING gist (clinic_id WITH =, patient_id WITH =, during WITH &&)
);

CREATE FUNCTION events_claim_slots() RETURNS trigger
    LANGUAGE plpgsql AS
$$
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
    RETURN NULL;
END
$$;

CREATE TRIGGER events_claim_slots
    AFTER INSERT ON events
    FOR EACH ROW
    WHEN (NEW.event_type IN ('AppointmentBooked', 'AppointmentRescheduled', 'AppointmentCancelled',
                             'AppointmentMarkedNoShow', 'AppointmentCompleted'))
EXECUTE FUNCTION events_claim_slots();

REVOKE ALL ON slot_claims FROM PUBLIC;
GRANT SELECT, INSERT, UPDATE, DELETE ON slot_claims TO clinic_app;
