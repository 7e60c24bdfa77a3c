-- What the plan limits count (issue 13; the rules are in commands::plans).
--
-- Patients: the clinic's MRN counter row, which every registration already locks to take its
-- number, also counts the clinic's patients (registered, less those merged away). The
-- statement that takes the MRN counts the patient in the same row update and returns the
-- count before it: no other lock, no other statement, no second update of the row. A
-- registration always takes its MRN there (and rolls the count back with the number if it
-- fails); a merge takes one off, in the trigger below.
ALTER TABLE mrn_counters ADD COLUMN patients integer NOT NULL DEFAULT 0;

CREATE FUNCTION events_count_merges() RETURNS trigger
    LANGUAGE plpgsql AS
$$
BEGIN
    UPDATE mrn_counters SET patients = patients - 1 WHERE clinic_id = NEW.tenant_id;
    RETURN NULL;
END
$$;

CREATE TRIGGER events_count_merges
    AFTER INSERT ON events
    FOR EACH ROW
    WHEN (NEW.event_type = 'PatientMerged')
EXECUTE FUNCTION events_count_merges();

UPDATE mrn_counters m
SET patients = x.n
FROM (SELECT tenant_id,
             count(*) FILTER (WHERE event_type = 'PatientRegistered')
                 - count(*) FILTER (WHERE event_type = 'PatientMerged') AS n
      FROM events
      WHERE aggregate_type = 'Patient'
        AND event_type IN ('PatientRegistered', 'PatientMerged')
      GROUP BY tenant_id) x
WHERE m.clinic_id = x.tenant_id;

-- Monthly bookings: only a plan that limits them (the trial) counts them, under the clinic's
-- registry row lock, from the appointments registry the booking trigger already writes. The
-- registry now records when each appointment was booked (the event's occurred_at). No index
-- on it: a trial clinic has at most a few hundred rows (300 bookings a month, 30 days), read
-- through the primary key's clinic prefix, and an index whose newest entries all go to the
-- same leaf would cost every booking of every clinic under concurrency.
ALTER TABLE care_links ADD COLUMN booked_at timestamptz;

UPDATE care_links l
SET booked_at = (e.metadata ->> 'occurred_at')::timestamptz
FROM events e
WHERE e.aggregate_type = 'Appointment'
  AND e.event_type = 'AppointmentBooked'
  AND e.tenant_id = l.clinic_id
  AND e.aggregate_id = l.clinic_id::text || ':' || l.appointment_id::text;

ALTER TABLE care_links ALTER COLUMN booked_at SET NOT NULL;

-- The trigger of 20261205000002_care_links.sql, which now records booked_at (and keeps the
-- owner's rights of 20261205000008_service_logins.sql).
CREATE OR REPLACE FUNCTION events_care_links() RETURNS trigger
    LANGUAGE plpgsql
    SECURITY DEFINER SET search_path = public AS
$$
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
    RETURN NULL;
END
$$;
