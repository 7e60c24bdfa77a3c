-- `append_access` (migration 20261206000010) wrote one access-log row per call. The service
-- now writes the rows of the reads that wait together with `append_accesses` (migration
-- 20261206000011) and no longer calls it; a function granted to clinic_app that nothing uses
-- is dropped rather than kept.
DROP FUNCTION append_access(uuid, uuid, text, uuid, text, text, text, inet, timestamptz, uuid[],
    jsonb);
