-- Modules and clinic settings (issue 13).
--
-- Modules (appointments, billing, laboratory) are switched per clinic within the plan. The
-- clinic registry row, which every request reads with the caller's account, gains the enabled
-- modules: a disabled module's endpoints are refused without another query. A registration
-- before modules existed enabled appointments only (the one module there was).
ALTER TABLE clinic_codes ADD COLUMN modules text[] NOT NULL DEFAULT '{appointments}';

-- The trigger of 20261206000001_plans.sql, which now also keeps the modules.
CREATE OR REPLACE FUNCTION events_clinic_plans() RETURNS trigger
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

DROP TRIGGER events_clinic_plans ON events;
CREATE TRIGGER events_clinic_plans
    AFTER INSERT ON events
    FOR EACH ROW
    WHEN (NEW.aggregate_type = 'Clinic' AND NEW.event_type IN
          ('ClinicRegistered', 'ClinicPlanChanged', 'ModuleEnabled', 'ModuleDisabled'))
EXECUTE FUNCTION events_clinic_plans();

-- The read model: the enabled modules, and the settings without a column of their own
-- (logo, address, phone, default appointment length, the working week of a new doctor).
ALTER FUNCTION rm_create_clinics(text) RENAME TO rm_create_clinics_v2;
CREATE FUNCTION rm_create_clinics(s text) RETURNS void
    LANGUAGE plpgsql AS
$$
BEGIN
    PERFORM rm_create_clinics_v2(s);
    EXECUTE format($ddl$ALTER TABLE %I.clinics
        ADD COLUMN modules  text[] NOT NULL DEFAULT '{appointments}',
        ADD COLUMN settings jsonb  NOT NULL DEFAULT '{}'$ddl$, s);
END
$$;

ALTER TABLE rm.clinics
    ADD COLUMN modules  text[] NOT NULL DEFAULT '{appointments}',
    ADD COLUMN settings jsonb  NOT NULL DEFAULT '{}';
