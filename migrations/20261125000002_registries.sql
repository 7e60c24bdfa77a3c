-- Set-based rules held atomically with the event append.
--
-- A clinic code is unique on the platform, and an MRN is unique within its clinic. No single
-- stream can hold these rules, so a trigger on `events` claims the code or MRN in the same
-- transaction that appends the registering event. If the claim fails, the append fails, and
-- nothing is written. The trigger raises its own SQLSTATEs (CK001, CK002) rather than a
-- unique violation, which postgres-es would report as an optimistic-lock conflict.

CREATE TABLE clinic_codes
(
    code      text PRIMARY KEY,
    clinic_id uuid NOT NULL UNIQUE
);

CREATE TABLE patient_mrns
(
    clinic_id  uuid NOT NULL,
    mrn        text NOT NULL,
    patient_id text NOT NULL,
    PRIMARY KEY (clinic_id, mrn)
);

-- MRN numbers handed out per clinic (gaps are harmless; reuse never happens).
CREATE TABLE mrn_counters
(
    clinic_id  uuid PRIMARY KEY,
    last_value bigint NOT NULL CHECK (last_value > 0)
);

CREATE FUNCTION events_claim_registries() RETURNS trigger
    LANGUAGE plpgsql AS
$$
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
    RETURN NULL;
END
$$;

CREATE TRIGGER events_claim_registries
    AFTER INSERT ON events
    FOR EACH ROW
    WHEN (NEW.event_type IN ('ClinicRegistered', 'PatientRegistered'))
EXECUTE FUNCTION events_claim_registries();

REVOKE ALL ON clinic_codes, patient_mrns, mrn_counters FROM PUBLIC;
GRANT SELECT, INSERT ON clinic_codes, patient_mrns TO clinic_app;
GRANT SELECT, INSERT, UPDATE ON mrn_counters TO clinic_app;
