-- Reads that return many patients, or stream a clinic's events, are recorded too (issue 12,
-- finding 4): one row per request, naming the patients returned (`patient_ids`) and the
-- filter the request used (`filter`, its query parameters as a JSON object).

ALTER TABLE access_log
    ADD COLUMN patient_ids uuid[] NOT NULL DEFAULT '{}',
    ADD COLUMN filter      jsonb;

-- "Who read patient P": P's own record reads (`patient_id`) or any list that returned P.
CREATE INDEX access_log_patient_ids_idx ON access_log USING gin (patient_ids);
