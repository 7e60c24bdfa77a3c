-- An Idempotency-Key claim is a lease (issue 12, finding 9). A request that times out, is
-- dropped by its client or dies after its claim no longer blocks the key for a day: once the
-- lease has run out, a retry learns from the event store whether the first attempt committed
-- (its events carry its request id and were appended after `head_position`) and gets that
-- answer, or runs the command again.

ALTER TABLE idempotency_keys
    ADD COLUMN lease_until   timestamptz,
    -- The claiming request's id (as stored in its events' metadata).
    ADD COLUMN request_id    text,
    -- The head of the event store when the key was claimed: the attempt's events come after.
    ADD COLUMN head_position bigint;
