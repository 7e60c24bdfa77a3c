#!/usr/bin/env bash
# Audit stream benchmark: one clinic with N events (default 1 000 000); streams them through
# GET /v1/audit/events (NDJSON) and reports the server's peak memory after streaming 10 000
# events and after streaming all N, in one run. Flat memory means the two peaks are close.
#
#   bench/stream.sh [N]
#
# Uses PostgreSQL on 127.0.0.1:5432 as `postgres` (or $BENCH_PG_URL); drops its database.
set -euo pipefail
N="${1:-1000000}"
source "$(dirname "$0")/common.sh"
bench_database clinic_bench_stream
export DATABASE_URL="$DB_URL" RUST_LOG=warn CLINIC_ADMIN_PASSWORD="bench admin password"
./target/release/clinic setup-clinic --name Stream --code stream --timezone UTC \
    --plan standard --admin-email admin@stream.example >/dev/null
CLINIC=$(psql "$DB_URL" -Atc "SELECT clinic_id FROM clinic_codes WHERE code = 'stream'")
psql "$DB_URL" -q -v ON_ERROR_STOP=1 <<SQL
INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata)
SELECT 'Patient', '$CLINIC:' || gen_random_uuid(), 1, 'PatientDeactivated', '1.0',
       '{"PatientDeactivated": {"reason": "benchmark filler"}}',
       json_build_object('tenant_id', '$CLINIC', 'actor_id', '00000000-0000-0000-0000-000000000000',
           'actor_role', 'system', 'request_id', 'bench', 'occurred_at', now())
FROM generate_series(1, $N);
ANALYZE events;
SQL
# Workers off: this measures the stream, not the projections.
bench_serve CLINIC_WORKERS=0
python3 - "$PORT" "$SERVER" "$N" <<'PY'
import json, sys, time, urllib.request
port, pid, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
base = f"http://127.0.0.1:{port}"
def mem():
    fields = dict(l.split(":", 1) for l in open(f"/proc/{pid}/status"))
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024
req = urllib.request.Request(base + "/v1/auth/login", method="POST",
        data=json.dumps({"email": "admin@stream.example", "password": "bench admin password"}).encode(),
        headers={"content-type": "application/json"})
token = json.load(urllib.request.urlopen(req))["access_token"]
def stream(query):
    req = urllib.request.Request(base + "/v1/audit/events" + query, headers={"authorization": "Bearer " + token})
    lines = size = 0
    t = time.perf_counter()
    with urllib.request.urlopen(req) as r:
        for line in r:
            lines += 1; size += len(line)
    return lines, size, time.perf_counter() - t
print(f"server before: rss {mem()[0]:.1f} MiB")
lines, size, secs = stream("?limit=10000")
small = mem()[1]
print(f"10 000 events: {lines} lines, {size / 2**20:.1f} MiB in {secs:.2f} s; server peak rss {small:.1f} MiB")
lines, size, secs = stream("")
big = mem()[1]
print(f"all events: {lines} lines, {size / 2**20:.1f} MiB in {secs:.1f} s ({lines / secs:.0f} events/s); server peak rss {big:.1f} MiB")
print(f"peak rss ratio all/10k: {big / small:.2f}")
PY
