-- Log-in hardening (issue 12, finding 8).
--
-- E-mails are stored in one normalised form, the one the service computes
-- (`domain::values::Email::key`: Unicode NFKC, then lower case by Unicode's rules), and both
-- the account lookup and the log-in throttle use it. Existing addresses are brought to that
-- form here when they are ASCII, where PostgreSQL's `lower` and the service's agree. An
-- existing address with other letters is left as it was: its lower case may differ between
-- the two (PostgreSQL lowers `İ` to `i`, Unicode to `i̇`), so it is changed through the API
-- (`PATCH /v1/staff/{id}` with the address), which stores the service's form.
UPDATE accounts
SET email = lower(normalize(email, NFKC))
WHERE email <> lower(normalize(email, NFKC))
  AND email ~ '^[[:ascii:]]*$';

-- Throttle rows expire: each log-in removes a few whose window has passed (by this index).
-- Client addresses are throttled in the same table (`client <ip>` keys).
CREATE INDEX login_throttle_window_idx ON login_throttle (window_start);
