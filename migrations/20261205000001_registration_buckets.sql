-- Patients registered per clinic and 15-minute bucket (issue 11).
--
-- The dashboard's "new patients this week" counted the clinic's patients registered since
-- the start of the local week, one index entry each: 100,000 entries for a clinic that
-- registered 100,000 patients this week. It now sums the week's buckets (at most 7 × 96 rows)
-- and counts the patients of the one partial bucket at the week's start, if any. Buckets of
-- 15 minutes, so that a local midnight of every time zone in use today (offsets are multiples
-- of 15 minutes) is a bucket boundary.
--
-- The patients projection owns the table: it adds to it in the statement that inserts the
-- new patient rows, and `clinic rebuild` builds it with `rm.patients`.

-- The bucket of an instant: 15 minutes, counted from 2000-01-01 00:00 UTC.
CREATE FUNCTION rm_bucket(t timestamptz) RETURNS timestamptz
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    RETURN date_bin('15 minutes', t, timestamptz '2000-01-01 00:00:00+00');

CREATE FUNCTION rm_create_patient_registrations(s text) RETURNS void
    LANGUAGE plpgsql AS
$$
BEGIN
    EXECUTE format($ddl$
        CREATE TABLE %I.patient_registrations
        (
            clinic_id  uuid        NOT NULL,
            -- rm_bucket(registered_at)
            bucket     timestamptz NOT NULL,
            registered integer     NOT NULL,
            PRIMARY KEY (clinic_id, bucket)
        )$ddl$, s);
    PERFORM rm_grant(s, 'patient_registrations');
    EXECUTE format($p$CREATE POLICY tenant ON %I.patient_registrations
        USING (clinic_id = nullif(current_setting('app.clinic_id', true), '')::uuid)$p$, s);
END
$$;

-- What `clinic rebuild` calls: the patients table as before, and its buckets.
ALTER FUNCTION rm_create_patients(text) RENAME TO rm_create_patients_v2;
CREATE FUNCTION rm_create_patients(s text) RETURNS void LANGUAGE sql
    BEGIN ATOMIC SELECT rm_create_patients_v2(s); SELECT rm_create_patient_registrations(s); END;

-- The live table, filled from the patients already projected (as the worker role: the
-- read models FORCE row-level security, and the worker role bypasses it).
SELECT rm_create_patient_registrations('rm');
SET LOCAL ROLE clinic_worker;
INSERT INTO rm.patient_registrations (clinic_id, bucket, registered)
SELECT clinic_id, rm_bucket(registered_at), count(*) FROM rm.patients GROUP BY 1, 2;
RESET ROLE;
ANALYZE rm.patient_registrations;
