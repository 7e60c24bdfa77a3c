-- Tamper evidence for the access log (issue 12, finding 13), as for the events: a per-clinic
-- hash chain, in commit order, kept by the projection workers (`projections::access_chain`)
-- and recomputed by `clinic verify`.
--
--   hash_n = SHA-256(hash_{n-1} || canonical bytes of access-log row n), hash_0 = 32 zeros,
--
-- where n counts the clinic's rows in commit order (transaction_id, id). A row deleted or
-- changed after it was chained no longer matches its link; a link deleted with it leaves a gap
-- in `link`. Nobody but the table owner may change the chain (clinic_app reads it,
-- clinic_worker appends to it).

-- Commit order of the rows: the chain covers a row only once no running transaction could
-- still commit a row before it (the same fence as the events').
ALTER TABLE access_log ADD COLUMN transaction_id xid8 NOT NULL DEFAULT pg_current_xact_id();
CREATE INDEX access_log_commit_order_idx ON access_log (transaction_id, id);

CREATE TABLE access_chain
(
    clinic_id      uuid   NOT NULL,
    access_id      bigint NOT NULL,
    transaction_id xid8   NOT NULL,
    link           bigint NOT NULL CHECK (link >= 1),
    hash           bytea  NOT NULL CHECK (octet_length(hash) = 32),
    PRIMARY KEY (clinic_id, access_id),
    UNIQUE (clinic_id, link)
);
CREATE INDEX access_chain_commit_order_idx ON access_chain (transaction_id, access_id);

ALTER TABLE access_chain ENABLE ROW LEVEL SECURITY;
ALTER TABLE access_chain FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant ON access_chain
    USING (clinic_id = nullif(current_setting('app.clinic_id', true), '')::uuid);

REVOKE ALL ON access_chain FROM PUBLIC;
GRANT SELECT ON access_chain TO clinic_app;
GRANT SELECT, INSERT ON access_chain TO clinic_worker;
-- The worker reads every clinic's rows (it bypasses row-level security).
GRANT SELECT ON access_log TO clinic_worker;
