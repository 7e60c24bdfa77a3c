-- The dashboard's next appointments (issue 11) are the active ones (booked, checked in, in
-- progress) not over yet, soonest first. Along (clinic_id, start_at) or
-- (clinic_id, doctor_id, start_at), every cancelled, fulfilled or no-show appointment ahead
-- was read and dropped: a doctor's dashboard read all their cancellations ahead, and the
-- clinic's needed a scan per status and a sort. These partial indexes hold only the active
-- appointments, in start order: the first ten entries along them are the ten listed.
ALTER FUNCTION rm_create_appointments(text) RENAME TO rm_create_appointments_v4;
CREATE FUNCTION rm_create_appointments(s text) RETURNS void
    LANGUAGE plpgsql AS
$$
BEGIN
    PERFORM rm_create_appointments_v4(s);
    EXECUTE format('CREATE INDEX ON %I.appointments (clinic_id, start_at, appointment_id) '
                   'WHERE status IN (''booked'', ''checked-in'', ''in-progress'')', s);
    EXECUTE format('CREATE INDEX ON %I.appointments (clinic_id, doctor_id, start_at, appointment_id) '
                   'WHERE status IN (''booked'', ''checked-in'', ''in-progress'')', s);
END
$$;

CREATE INDEX ON rm.appointments (clinic_id, start_at, appointment_id)
    WHERE status IN ('booked', 'checked-in', 'in-progress');
CREATE INDEX ON rm.appointments (clinic_id, doctor_id, start_at, appointment_id)
    WHERE status IN ('booked', 'checked-in', 'in-progress');
