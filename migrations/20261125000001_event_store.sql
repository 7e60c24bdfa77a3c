-- Event store: postgres-es's `events` and `snapshots` tables, plus the columns that make the
-- store multi-tenant and readable in commit order. postgres-es names the columns it inserts,
-- so the extra columns below are filled by defaults and generation, never by the library.

-- The role the service runs as (each pooled connection does `SET ROLE clinic_app`). It is not
-- the tables' owner and not a superuser, so row-level security applies to it and it cannot
-- rewrite history: it may read and append events, never update or delete them.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'clinic_app') THEN
        CREATE ROLE clinic_app NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS;
    END IF;
    -- A non-superuser that runs the migrations must be able to `SET ROLE clinic_app`.
    IF NOT (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) THEN
        EXECUTE format('GRANT clinic_app TO %I', current_user);
    END IF;
END
$$;

CREATE TABLE events
(
    aggregate_type text                         NOT NULL,
    aggregate_id   text                         NOT NULL,
    sequence       bigint CHECK (sequence >= 0) NOT NULL,
    event_type     text                         NOT NULL,
    event_version  text                         NOT NULL,
    payload        json                         NOT NULL,
    metadata       json                         NOT NULL,
    -- The clinic the event belongs to, taken from its metadata. An event without a tenant
    -- cannot be stored: the expression is NULL and the NOT NULL constraint refuses the row.
    tenant_id      uuid GENERATED ALWAYS AS ((metadata ->> 'tenant_id')::uuid) STORED NOT NULL,
    -- Global order of appends (not of commits: see transaction_id).
    position       bigint GENERATED ALWAYS AS IDENTITY NOT NULL,
    -- The appending transaction; readers use (transaction_id, position) below the oldest
    -- running transaction so that a late commit with a lower position is never skipped.
    transaction_id xid8 DEFAULT pg_current_xact_id() NOT NULL,
    PRIMARY KEY (aggregate_type, aggregate_id, sequence),
    -- Streams are addressed as `{clinic_id}:{entity_id}`: a stream can only hold events of
    -- the clinic its id names.
    CONSTRAINT events_stream_belongs_to_tenant
        CHECK (starts_with(aggregate_id, tenant_id::text || ':')),
    CONSTRAINT events_metadata_is_object CHECK (json_typeof(metadata) = 'object')
);

CREATE UNIQUE INDEX events_position_key ON events (position);
CREATE INDEX events_tenant_position_idx ON events (tenant_id, position);
CREATE INDEX events_commit_order_idx ON events (transaction_id, position);

-- Snapshots, as postgres-es expects them (used only if snapshotting is turned on).
CREATE TABLE snapshots
(
    aggregate_type   text                                 NOT NULL,
    aggregate_id     text                                 NOT NULL,
    last_sequence    bigint CHECK (last_sequence >= 0)    NOT NULL,
    current_snapshot bigint CHECK (current_snapshot >= 0) NOT NULL,
    payload          json                                 NOT NULL,
    PRIMARY KEY (aggregate_type, aggregate_id, last_sequence)
);

REVOKE ALL ON events, snapshots FROM PUBLIC;
GRANT SELECT, INSERT ON events TO clinic_app;
GRANT SELECT, INSERT, UPDATE ON snapshots TO clinic_app;

-- `GET /readyz` compares the applied migrations with the ones the binary embeds.
GRANT SELECT ON _sqlx_migrations TO clinic_app;
