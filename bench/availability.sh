#!/usr/bin/env bash
# Availability benchmark: a doctor with 9–17 working hours, time off and 60 booked
# appointments over the next two weeks; times GET /v1/doctors/{id}/availability for a
# 2-week window (200 requests, sequential, release build) and, in the same run,
# GET /healthz as the baseline, and prints both and their ratio.
#
#   bench/availability.sh
#
# Uses PostgreSQL on 127.0.0.1:5432 as `postgres` (or $BENCH_PG_URL) and drops its database.
set -euo pipefail
source "$(dirname "$0")/common.sh"
bench_database clinic_bench_avail
export DATABASE_URL="$DB_URL" RUST_LOG=warn CLINIC_ADMIN_PASSWORD="bench admin password"
./target/release/clinic setup-clinic --name Bench --code bench --timezone Europe/Berlin \
    --plan standard --admin-email admin@bench.example >/dev/null
bench_serve
python3 - "$PORT" <<'PY'
import json, statistics, sys, time, urllib.request, datetime as dt
base = f"http://127.0.0.1:{sys.argv[1]}"
def call(method, path, token=None, body=None, headers=None):
    req = urllib.request.Request(base + path, method=method,
                                 data=None if body is None else json.dumps(body).encode())
    req.add_header("content-type", "application/json")
    if token: req.add_header("authorization", "Bearer " + token)
    for k, v in (headers or {}).items(): req.add_header(k, v)
    with urllib.request.urlopen(req) as r:
        return json.loads(r.read() or b"null")
admin = call("POST", "/v1/auth/login", body={"email": "admin@bench.example", "password": "bench admin password"})["access_token"]
doctor = call("POST", "/v1/staff", admin, {"name": "Dr Bench", "email": "dr@bench.example", "role": "doctor",
                                            "licence_number": "L-1", "password": "bench doctor password"})["id"]
day = [{"start": "09:00", "end": "17:00"}]
call("PUT", f"/v1/staff/{doctor}/working-hours", admin, {d: day for d in ["mon","tue","wed","thu","fri","sat","sun"]})
today = dt.datetime.now(dt.timezone.utc).replace(hour=10, minute=0, second=0, microsecond=0)
call("POST", f"/v1/staff/{doctor}/time-off", admin, {"start": (today + dt.timedelta(days=5)).isoformat(),
                                                     "end": (today + dt.timedelta(days=6)).isoformat()})
last = 0
for i in range(60):
    p = call("POST", "/v1/patients", admin, {"name": {"given": f"P{i}", "family": "Bench"},
             "birth_date": "1980-01-01", "sex": "female"})["id"]
    start = today + dt.timedelta(days=1 + i % 14, minutes=15 * (i // 14) * 3)
    try:
        last = call("POST", "/v1/appointments", admin, {"patient_id": p, "doctor_id": doctor,
                    "start": start.isoformat(), "end": (start + dt.timedelta(minutes=30)).isoformat()})["position"]
    except urllib.error.HTTPError:
        pass
frm = today.isoformat().replace("+00:00", "Z"); to = (today + dt.timedelta(days=14)).isoformat().replace("+00:00", "Z")
path = f"/v1/doctors/{doctor}/availability?from={frm}&to={to}&duration=30"
slots = len(call("GET", path, admin, headers={"x-min-position": str(last)})["slots"])
def timed(fn, n=200):
    out = []
    for _ in range(n):
        t = time.perf_counter(); fn(); out.append((time.perf_counter() - t) * 1000)
    out.sort(); return statistics.median(out), out[int(len(out) * 0.95)]
avail = timed(lambda: call("GET", path, admin))
health = timed(lambda: call("GET", "/healthz"))
print(f"availability, 2-week window ({slots} slots offered): median {avail[0]:.2f} ms, p95 {avail[1]:.2f} ms")
print(f"healthz baseline:                                 median {health[0]:.2f} ms, p95 {health[1]:.2f} ms")
print(f"ratio availability / healthz (median): {avail[0] / health[0]:.1f}")
PY
