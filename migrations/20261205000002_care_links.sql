-- Which doctor may see which patient (issue 12, finding 2). A doctor sees a patient who has
-- an appointment with them that is booked, checked in, in progress or fulfilled. A cancelled
-- appointment or a no-show grants nothing. The read side applies the same rule to
-- `rm.appointments`. The write side reads this registry, which the trigger below keeps in
-- the same transaction as the append (like `slot_claims`), so a doctor's booking or
-- demographics update is checked against the appointments as they are at that commit.

CREATE TABLE care_links
(
    clinic_id      uuid    NOT NULL,
    appointment_id uuid    NOT NULL,
    doctor_id      uuid    NOT NULL,
    patient_id     uuid    NOT NULL,
    -- false once the appointment is cancelled or marked no-show.
    grants         boolean NOT NULL,
    PRIMARY KEY (clinic_id, appointment_id)
);
CREATE INDEX care_links_doctor_patient_idx ON care_links (clinic_id, doctor_id, patient_id)
    WHERE grants;

CREATE FUNCTION events_care_links() RETURNS trigger
    LANGUAGE plpgsql AS
$$
DECLARE
    v_body        json;
    v_appointment uuid;
BEGIN
    v_body := NEW.payload -> NEW.event_type;
    v_appointment := split_part(NEW.aggregate_id, ':', 2)::uuid;
    IF NEW.event_type = 'AppointmentBooked' THEN
        INSERT INTO care_links (clinic_id, appointment_id, doctor_id, patient_id, grants)
        VALUES (NEW.tenant_id, v_appointment, (v_body ->> 'doctor_id')::uuid,
                (v_body ->> 'patient_id')::uuid, true);
    ELSE
        UPDATE care_links SET grants = false
        WHERE clinic_id = NEW.tenant_id AND appointment_id = v_appointment;
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER events_care_links
    AFTER INSERT ON events
    FOR EACH ROW
    WHEN (NEW.event_type IN ('AppointmentBooked', 'AppointmentCancelled', 'AppointmentMarkedNoShow'))
EXECUTE FUNCTION events_care_links();

-- The appointments booked before this migration.
INSERT INTO care_links (clinic_id, appointment_id, doctor_id, patient_id, grants)
SELECT b.tenant_id,
       split_part(b.aggregate_id, ':', 2)::uuid,
       (b.payload -> 'AppointmentBooked' ->> 'doctor_id')::uuid,
       (b.payload -> 'AppointmentBooked' ->> 'patient_id')::uuid,
       NOT EXISTS (SELECT 1
                   FROM events e
                   WHERE e.aggregate_type = b.aggregate_type
                     AND e.aggregate_id = b.aggregate_id
                     AND e.event_type IN ('AppointmentCancelled', 'AppointmentMarkedNoShow'))
FROM events b
WHERE b.aggregate_type = 'Appointment'
  AND b.event_type = 'AppointmentBooked';

REVOKE ALL ON care_links FROM PUBLIC;
GRANT SELECT, INSERT, UPDATE ON care_links TO clinic_app;
