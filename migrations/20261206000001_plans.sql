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
-- trial's end and the enabled modules, which every request reads with the caller's account.
-- The plan is NULL only between the registration's two triggers.
ALTER TABLE clinic_codes
    ADD COLUMN plan          text,
    ADD COLUMN trial_ends_at timestamptz,
    -- The enabled modules (appointments, billing, laboratory): a disabled module's endpoints
    -- are refused without another query. A clinic registered before modules existed has
    -- appointments only (the one module there was).
    ADD COLUMN modules       text[] NOT NULL DEFAULT '{appointments}';

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
            trial_ends_at = trial_end_of_registration(v_body, NEW.metadata),
            modules       = CASE
                                WHEN v_body -> 'modules' IS NULL THEN '{appointments}'
                                ELSE ARRAY(SELECT json_array_elements_text(v_body -> 'modules'))
                END
        WHERE clinic_id = NEW.tenant_id;
    ELSIF NEW.event_type = 'ClinicPlanChanged' THEN
        -- No plan change leads to a trial, so any change ends one.
        UPDATE clinic_codes
        SET plan          = plan_of_stored(v_body ->> 'to'),
            trial_ends_at = NULL
        WHERE clinic_id = NEW.tenant_id;
    ELSIF NEW.event_type = 'ModuleEnabled' THEN
        UPDATE clinic_codes
        SET modules = array_append(array_remove(modules, v_body ->> 'module'), v_body ->> 'module')
        WHERE clinic_id = NEW.tenant_id;
    ELSIF NEW.event_type = 'ModuleDisabled' THEN
        UPDATE clinic_codes
        SET modules = array_remove(modules, v_body ->> 'module')
        WHERE clinic_id = NEW.tenant_id;
    END IF;
    RETURN NULL;
END
$$;

-- Fires after events_claim_registries (triggers fire in name order), which inserts the row.
CREATE TRIGGER events_clinic_plans
    AFTER INSERT ON events
    FOR EACH ROW
    WHEN (NEW.aggregate_type = 'Clinic' AND NEW.event_type IN
          ('ClinicRegistered', 'ClinicPlanChanged', 'ModuleEnabled', 'ModuleDisabled'))
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

-- The read model: the plan by its current name, the trial's end, the enabled modules, and the
-- settings without a column of their own (logo, address, phone, default appointment length,
-- the working week of a new doctor). `clinic rebuild` makes the table with the columns; the
-- live table gains them and its rows' plans are mapped here (as the worker role: the read
-- models force row-level security).
ALTER FUNCTION rm_create_clinics(text) RENAME TO rm_create_clinics_v1;
CREATE FUNCTION rm_create_clinics(s text) RETURNS void
    LANGUAGE plpgsql AS
$$
BEGIN
    PERFORM rm_create_clinics_v1(s);
    EXECUTE format($ddl$ALTER TABLE %I.clinics
        ADD COLUMN trial_ends_at timestamptz,
        ADD COLUMN modules       text[] NOT NULL DEFAULT '{appointments}',
        ADD COLUMN settings      jsonb  NOT NULL DEFAULT '{}'$ddl$, s);
END
$$;

ALTER TABLE rm.clinics
    ADD COLUMN trial_ends_at timestamptz,
    ADD COLUMN modules       text[] NOT NULL DEFAULT '{appointments}',
    ADD COLUMN settings      jsonb  NOT NULL DEFAULT '{}';
SET LOCAL ROLE clinic_worker;
-- registered_at is the registration's occurred_at.
UPDATE rm.clinics
SET plan          = plan_of_stored(plan),
    trial_ends_at = CASE WHEN plan_of_stored(plan) = 'trial' THEN registered_at + interval '30 days' END;
RESET ROLE;
