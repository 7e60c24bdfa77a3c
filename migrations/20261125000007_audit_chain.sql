-- Tamper evidence: a per-clinic hash chain over the event log, in commit order.
--
-- The projection `audit_chain` (projections/src/chain.rs) appends one link per event:
--   hash_n = SHA-256(hash_{n-1} || canonical bytes of event n), hash_0 = 32 zero bytes,
-- where n counts the clinic's events in commit order (transaction_id, position). `link` is
-- that n (1, 2, …), so the latest link is the one with the highest `link`, not the highest
-- position (a lower position can commit later).
--
-- The chain is evidence, not a read model: `clinic rebuild` never rebuilds it, and nobody but
-- the table owner may change or delete a link (clinic_app reads, clinic_worker appends).

CREATE TABLE audit_chain
(
    clinic_id uuid   NOT NULL,
    position  bigint NOT NULL,
    link      bigint NOT NULL CHECK (link >= 1),
    hash      bytea  NOT NULL CHECK (octet_length(hash) = 32),
    PRIMARY KEY (clinic_id, position),
    UNIQUE (clinic_id, link)
);

ALTER TABLE audit_chain ENABLE ROW LEVEL SECURITY;
ALTER TABLE audit_chain FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant ON audit_chain
    USING (clinic_id = nullif(current_setting('app.clinic_id', true), '')::uuid);

REVOKE ALL ON audit_chain FROM PUBLIC;
GRANT SELECT ON audit_chain TO clinic_app;
GRANT SELECT, INSERT ON audit_chain TO clinic_worker;

INSERT INTO projection_checkpoints (name) VALUES ('audit_chain');
