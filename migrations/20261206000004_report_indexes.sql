-- Reports (issue 13) count appointments by when they were booked: a clinic's bookings per
-- doctor in a month, and each clinic's bookings this month in the platform overview. An
-- index on (clinic_id, booked_at) reads one clinic's month, not all its appointments.
ALTER FUNCTION rm_create_appointments(text) RENAME TO rm_create_appointments_v2;
CREATE FUNCTION rm_create_appointments(s text) RETURNS void
    LANGUAGE plpgsql AS
$$
BEGIN
    PERFORM rm_create_appointments_v2(s);
    EXECUTE format('CREATE INDEX ON %I.appointments (clinic_id, booked_at)', s);
END
$$;

CREATE INDEX ON rm.appointments (clinic_id, booked_at);

-- The platform overview's use of the plans (issue 13): per clinic, its active doctors and
-- staff, its patients (less those merged away) and its bookings of its current calendar
-- month. The platform admin may not read the clinics' staff, patient and appointment rows
-- (row-level security); this function reads them as the worker role, which may, and gives
-- back counts only, never a row.
CREATE FUNCTION rm_platform_use(now timestamptz)
    RETURNS TABLE (clinic_id uuid, doctors bigint, staff bigint, patients bigint, bookings bigint)
    LANGUAGE sql STABLE
    SECURITY DEFINER SET search_path = public AS
$$
SELECT c.clinic_id,
       coalesce(s.doctors, 0),
       coalesce(s.staff, 0),
       coalesce(p.patients, 0),
       coalesce(b.bookings, 0)
FROM rm.clinics c
         LEFT JOIN (SELECT clinic_id, count(*) FILTER (WHERE role = 'doctor') AS doctors, count(*) AS staff
                    FROM rm.staff
                    WHERE active
                    GROUP BY clinic_id) s ON s.clinic_id = c.clinic_id
         LEFT JOIN (SELECT clinic_id, count(*) AS patients
                    FROM rm.patients
                    WHERE status <> 'merged'
                    GROUP BY clinic_id) p ON p.clinic_id = c.clinic_id
         LEFT JOIN LATERAL (SELECT count(*) AS bookings
                            FROM rm.appointments a
                            WHERE a.clinic_id = c.clinic_id
                              AND a.booked_at >= date_trunc('month', now AT TIME ZONE c.time_zone)
                                                     AT TIME ZONE c.time_zone
                              AND a.booked_at < (date_trunc('month', now AT TIME ZONE c.time_zone)
                                                     + interval '1 month') AT TIME ZONE c.time_zone) b ON true
$$;
ALTER FUNCTION rm_platform_use(timestamptz) OWNER TO clinic_worker;
REVOKE ALL ON FUNCTION rm_platform_use(timestamptz) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION rm_platform_use(timestamptz) TO clinic_app;
