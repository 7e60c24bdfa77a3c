-- Reads whose cost does not grow with the clinic (issue 11).
--
-- Every list and search page walks an index range in the order it answers in, instead of
-- reading the whole clinic and sorting it:
-- - The folded name keys and the phone digits are stored COLLATE "C": they are already
--   normalised (rm_fold: lower case, no accents), so byte order is the order the API promises
--   (code point order of the folded key, whatever the database's default collation), and a
--   b-tree in "C" order serves ORDER BY, the keyset cursor and a prefix range alike. Before,
--   a `text_pattern_ops` index could serve neither ORDER BY nor a comparison in the default
--   collation, so each page was a scan of the whole clinic plus a sort.
-- - A prefix is a range: `key >= prefix AND key < rm_prefix_end(prefix)`.
-- - The appointment indexes end with the keyset's tie-breaker (appointment_id), so a cursor
--   is an index bound, and the clinic-wide one carries what the dashboard counts
--   (index-only scans over the dashboard's window of days).
--
-- rm_read_keys(schema, table) makes the change; the new rm_create_<projection> calls it on
-- the first version's fresh table, so `clinic rebuild` builds tables with the same keys and
-- indexes as this migration gives the live ones.

-- The least string above every string that starts with `p`, in "C" (code point) order:
-- `p` with its last character incremented (a character at U+10FFFF is dropped and the one
-- before it incremented; the surrogate range, which text cannot hold, is skipped). NULL when
-- there is none (`p` empty or all U+10FFFF).
CREATE FUNCTION rm_prefix_end(p text) RETURNS text
    LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS
$$
DECLARE
    c integer;
BEGIN
    WHILE p <> '' LOOP
        c := ascii(right(p, 1));
        p := left(p, -1);
        IF c < 1114111 THEN
            RETURN p || chr(CASE WHEN c + 1 = 55296 THEN 57344 ELSE c + 1 END);
        END IF;
    END LOOP;
    RETURN NULL;
END
$$;

-- The range of keys that start with `p`, as used by the queries: a prefix without an end
-- (empty) reaches the top of the key space.
CREATE FUNCTION rm_prefix_upper(p text) RETURNS text
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    RETURN coalesce(rm_prefix_end(p), repeat(chr(1114111), 4));

-- The first versions stay, renamed; the new rm_create_* build on them.
ALTER FUNCTION rm_create_patients(text) RENAME TO rm_create_patients_v1;
ALTER FUNCTION rm_create_appointments(text) RENAME TO rm_create_appointments_v1;

-- Gives table `t` (patients or appointments) of schema `s` this migration's keys and
-- indexes: drops its secondary indexes (every one but the keys), re-collates the folded keys
-- (the same type, only the collation changes: no table rewrite), builds the new indexes.
CREATE FUNCTION rm_read_keys(s text, t text) RETURNS void
    LANGUAGE plpgsql AS
$$
DECLARE
    i    record;
    cols text;
BEGIN
    FOR i IN
        SELECT c.relname
        FROM pg_index x
        JOIN pg_class c ON c.oid = x.indexrelid
        WHERE x.indrelid = format('%I.%I', s, t)::regclass
          AND NOT x.indisprimary AND NOT x.indisunique
    LOOP
        EXECUTE format('DROP INDEX %I.%I', s, i.relname);
    END LOOP;
    IF t = 'patients' THEN
        EXECUTE format('ALTER TABLE %I.patients ALTER COLUMN given_key TYPE text COLLATE "C", '
                       'ALTER COLUMN family_key TYPE text COLLATE "C", '
                       'ALTER COLUMN phone_digits TYPE text COLLATE "C"', s);
    END IF;
    FOREACH cols IN ARRAY CASE WHEN t = 'patients' THEN ARRAY[
        -- The list's order and keyset; a family-name prefix is a range of it.
        '(clinic_id, family_key, given_key, patient_id)',
        -- A given-name prefix.
        '(clinic_id, given_key, family_key)',
        '(clinic_id, phone_digits)',
        -- A birth date, already in the list's order.
        '(clinic_id, birth_date, family_key, given_key, patient_id)',
        -- The dashboard's patients registered this week.
        '(clinic_id, registered_at)']
    ELSE ARRAY[
        -- The list's order and keyset; the dashboard reads its counts from this index alone.
        '(clinic_id, start_at, appointment_id) INCLUDE (doctor_id, status, end_at)',
        -- A doctor's list, the doctor's next appointments, and availability.
        '(clinic_id, doctor_id, start_at, appointment_id) INCLUDE (status, end_at)',
        '(clinic_id, patient_id, start_at, appointment_id)',
        '(clinic_id, status, start_at, appointment_id)'] END
    LOOP
        EXECUTE format('CREATE INDEX ON %I.%I ', s, t) || cols;
    END LOOP;
END
$$;

-- What `clinic rebuild` calls: the first version's empty table, given the new keys.
CREATE FUNCTION rm_create_patients(s text) RETURNS void LANGUAGE sql
    BEGIN ATOMIC SELECT rm_create_patients_v1(s); SELECT rm_read_keys(s, 'patients'); END;
CREATE FUNCTION rm_create_appointments(s text) RETURNS void LANGUAGE sql
    BEGIN ATOMIC SELECT rm_create_appointments_v1(s); SELECT rm_read_keys(s, 'appointments'); END;

-- The live tables.
SELECT rm_read_keys('rm', 'patients');
SELECT rm_read_keys('rm', 'appointments');
ANALYZE rm.patients;
ANALYZE rm.appointments;
