-- Group commit of the access log (issue 11). Every read of patient data writes its access-log
-- row, durably, before it answers (issue 12); one transaction, and one WAL flush, per read
-- bounded the reads at 32 clients. The service now hands the rows of the reads waiting at the
-- same moment to this function, which writes them in one transaction: one round trip, one
-- commit, for all of them. Each read still answers only once its row has committed.
--
-- The rows may belong to several clinics. For each clinic in turn the function scopes the
-- transaction to it (`app.clinic_id`, local) and inserts that clinic's rows only, so the
-- insert policy `tenant_append` still admits only rows of the clinic the transaction is
-- scoped to, as with `append_access`. SECURITY INVOKER: it runs as the caller (`clinic_app`),
-- under row-level security, with no right the caller does not have.
--
-- `p_patient_ids` holds each row's patient ids as an array literal (`{id,id}`): PostgreSQL's
-- arrays are rectangular, so an array of id lists of different lengths cannot be passed.
-- The rows are inserted in the order given (`ordinality`), so their ids follow the order the
-- reads arrived in.
CREATE FUNCTION append_accesses(p_clinic uuid[], p_actor uuid[], p_role text[], p_patient uuid[],
                                p_endpoint text[], p_outcome text[], p_request text[],
                                p_ip inet[], p_at timestamptz[], p_patient_ids text[],
                                p_filter jsonb[])
    RETURNS void
    LANGUAGE plpgsql
    SECURITY INVOKER AS
$$
DECLARE
    c uuid;
BEGIN
    FOR c IN SELECT DISTINCT x FROM unnest(p_clinic) AS t(x) ORDER BY 1 LOOP
        PERFORM set_config('app.clinic_id', c::text, true);
        INSERT INTO access_log (clinic_id, actor_id, role, patient_id, endpoint, outcome,
                                request_id, client_ip, at, patient_ids, filter)
        SELECT u.clinic_id, u.actor_id, u.role, u.patient_id, u.endpoint, u.outcome,
               u.request_id, u.client_ip, u.at, u.patient_ids::uuid[], u.filter
        FROM unnest(p_clinic, p_actor, p_role, p_patient, p_endpoint, p_outcome, p_request,
                    p_ip, p_at, p_patient_ids, p_filter)
                 WITH ORDINALITY AS u(clinic_id, actor_id, role, patient_id, endpoint, outcome,
                                      request_id, client_ip, at, patient_ids, filter, n)
        WHERE u.clinic_id = c
        ORDER BY u.n;
    END LOOP;
END
$$;

REVOKE ALL ON FUNCTION append_accesses(uuid[], uuid[], text[], uuid[], text[], text[], text[],
    inet[], timestamptz[], text[], jsonb[]) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION append_accesses(uuid[], uuid[], text[], uuid[], text[], text[], text[],
    inet[], timestamptz[], text[], jsonb[]) TO clinic_app;
