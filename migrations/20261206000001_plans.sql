-- Four plans with limits (issue 13): trial, basic, professional, enterprise. Their numbers are
-- in `domain::plan` and nowhere else; the database keeps only each clinic's plan and, on a
-- trial, when it ends.
--
-- Events written before the four plans say `free` and `standard`. They are never rewritten
-- (their hashes must still verify): every reader maps the names as it reads them. The service
-- does so in Rust (`domain::plan::stored`); SQL that reads a plan out of an event payload
-- calls `plan_of_stored`, the same table.
CREATE FUNCTION plan_of_stored(name text) RETURNS text
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    RETURN CASE name WHEN 'free' THEN 'trial' WHEN 'standard' THEN 'professional' ELSE name END;

-- When a trial registered by an event ends. New events carry `trial_ends_at`. A `free` clinic
-- of an older event has none: its trial ends the trial's 30 days (domain::plan, Trial) after
-- its registration, as the projection computes it too.
CREATE FUNCTION trial_end_of_registration(body json, metadata json) RETURNS timestamptz
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN CASE
               WHEN plan_of_stored(body ->> 'plan') = 'trial'
                   THEN coalesce((body ->> 'trial_ends_at')::timestamptz,
                                 (metadata ->> 'occurred_at')::timestamptz + interval '30 days')
        END;

-- The clinic registry (one row per clinic, written by the triggers on `events` in the
-- appending transaction) gains the plan, which the plan limits are checked against, and the
-- trial's end, which every request reads with the caller's account. NULL only between the
-- registration's two triggers.
ALTER TABLE clinic_codes
    ADD COLUMN plan          text,
    ADD COLUMN trial_ends_at timestamptz;

CREATE FUNCTION events_clinic_plans() RETURNS trigger
    LANGUAGE plpgsql
    SECURITY DEFINER SET search_path = public AS
$$
DECLARE
    v_body json;
BEGIN
    v_body := NEW.payload -> NEW.event_type;
    IF NEW.event_type = 'ClinicRegistered' THEN
        UPDATE clinic_codes
        SET plan          = plan_of_stored(v_body ->> 'plan'),
            trial_ends_at = trial_end_of_registration(v_body, NEW.metadata)
        WHERE clinic_id = NEW.tenant_id;
    ELSIF NEW.event_type = 'ClinicPlanChanged' THEN
        -- No plan change leads to a trial, so any change ends one.
        UPDATE clinic_codes
        SET plan          = plan_of_stored(v_body ->> 'to'),
            trial_ends_at = NULL
        WHERE clinic_id = NEW.tenant_id;
    END IF;
    RETURN NULL;
END
$$;

-- Fires after events_claim_registries (triggers fire in name order), which inserts the row.
CREATE TRIGGER events_clinic_plans
    AFTER INSERT ON events
    FOR EACH ROW
    WHEN (NEW.aggregate_type = 'Clinic' AND NEW.event_type IN ('ClinicRegistered', 'ClinicPlanChanged'))
EXECUTE FUNCTION events_clinic_plans();

-- The clinics registered before this migration: their last registration or plan change.
WITH last AS (SELECT DISTINCT ON (tenant_id) tenant_id, event_type, payload -> event_type AS body, metadata
              FROM events
              WHERE aggregate_type = 'Clinic'
                AND event_type IN ('ClinicRegistered', 'ClinicPlanChanged')
              ORDER BY tenant_id, sequence DESC)
UPDATE clinic_codes c
SET plan          = plan_of_stored(CASE l.event_type
                                       WHEN 'ClinicRegistered' THEN l.body ->> 'plan'
                                       ELSE l.body ->> 'to' END),
    trial_ends_at = CASE l.event_type
                        WHEN 'ClinicRegistered' THEN trial_end_of_registration(l.body, l.metadata) END
FROM last l
WHERE c.clinic_id = l.tenant_id;

-- The read model: the plan by its current name, and the trial's end. `clinic rebuild` makes
-- the table with the column; the live table gains it and its rows are mapped here (as the
-- worker role: the read models force row-level security).
ALTER FUNCTION rm_create_clinics(text) RENAME TO rm_create_clinics_v1;
CREATE FUNCTION rm_create_clinics(s text) RETURNS void
    LANGUAGE plpgsql AS
$$
BEGIN
    PERFORM rm_create_clinics_v1(s);
    EXECUTE format('ALTER TABLE %I.clinics ADD COLUMN trial_ends_at timestamptz', s);
END
$$;

ALTER TABLE rm.clinics ADD COLUMN trial_ends_at timestamptz;
SET LOCAL ROLE clinic_worker;
-- registered_at is the registration's occurred_at.
UPDATE rm.clinics
SET plan          = plan_of_stored(plan),
    trial_ends_at = CASE WHEN plan_of_stored(plan) = 'trial' THEN registered_at + interval '30 days' END;
RESET ROLE;
