-- Appointment types (issue 14): a booking may name the kind of visit (the clinic's own code,
-- `follow-up`), which the fee schedule prices by. The appointment read model shows it and
-- filters by it. NULL for a booking without one (every booking written before types existed).
ALTER FUNCTION rm_create_appointments(text) RENAME TO rm_create_appointments_v3;
CREATE FUNCTION rm_create_appointments(s text) RETURNS void
    LANGUAGE plpgsql AS
$$
BEGIN
    PERFORM rm_create_appointments_v3(s);
    EXECUTE format('ALTER TABLE %I.appointments ADD COLUMN appointment_type text', s);
END
$$;

ALTER TABLE rm.appointments ADD COLUMN appointment_type text;

-- Bookings the workers projected before the column existed: their type, from their event.
UPDATE rm.appointments a
SET appointment_type = e.payload -> 'AppointmentBooked' ->> 'appointment_type'
FROM events e
WHERE e.aggregate_type = 'Appointment'
  AND e.event_type = 'AppointmentBooked'
  AND e.aggregate_id = a.clinic_id || ':' || a.appointment_id
  AND e.payload -> 'AppointmentBooked' ->> 'appointment_type' IS NOT NULL;
