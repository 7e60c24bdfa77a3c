-- One round trip for an access-log row (issue 11: since issue 12 every read of patient data
-- writes one before it answers). The row was written in a transaction of its own: BEGIN with
-- the clinic's scope, the INSERT, COMMIT — three round trips. This function does the same in
-- one statement (its own transaction when called alone): it scopes the transaction to the
-- row's clinic and inserts the row, so the insert policy (`tenant_append`) still admits only a
-- row of the clinic the transaction is scoped to. SECURITY INVOKER: it runs as the caller
-- (`clinic_app`), under row-level security, with no right the caller does not have.
CREATE FUNCTION append_access(p_clinic uuid, p_actor uuid, p_role text, p_patient uuid,
                              p_endpoint text, p_outcome text, p_request text, p_ip inet,
                              p_at timestamptz, p_patient_ids uuid[], p_filter jsonb)
    RETURNS void
    LANGUAGE plpgsql
    SECURITY INVOKER AS
$$
BEGIN
    PERFORM set_config('app.clinic_id', p_clinic::text, true);
    INSERT INTO access_log (clinic_id, actor_id, role, patient_id, endpoint, outcome, request_id,
                            client_ip, at, patient_ids, filter)
    VALUES (p_clinic, p_actor, p_role, p_patient, p_endpoint, p_outcome, p_request, p_ip, p_at,
            p_patient_ids, p_filter);
END
$$;

REVOKE ALL ON FUNCTION append_access(uuid, uuid, text, uuid, text, text, text, inet, timestamptz,
    uuid[], jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION append_access(uuid, uuid, text, uuid, text, text, text, inet,
    timestamptz, uuid[], jsonb) TO clinic_app;
