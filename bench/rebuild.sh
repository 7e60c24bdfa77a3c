#!/usr/bin/env bash
# Rebuild benchmark: fills a fresh database with N synthetic events (default 100000) of
# 10 clinics — clinic registrations, patient registrations and demographic updates, all valid
# domain events — then times `clinic rebuild` (all four projections, from position zero).
#
#   bench/rebuild.sh [N]
#
# Uses PostgreSQL on 127.0.0.1:5432 as `postgres` (or $BENCH_PG_URL, a URL to an admin
# database), builds the release binary, and drops its database at the end.
set -euo pipefail
N="${1:-100000}"
source "$(dirname "$0")/common.sh"
bench_database clinic_bench
DATABASE_URL="$DB_URL" RUST_LOG=warn ./target/release/clinic migrate

PATIENTS=$(( (N - 10) / 2 ))
psql "$DB_URL" -q -v ON_ERROR_STOP=1 <<SQL
-- 10 clinics
INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata)
SELECT 'Clinic', c.id || ':' || c.id, 1, 'ClinicRegistered', '1.0',
       json_build_object('ClinicRegistered', json_build_object(
           'clinic_id', c.id, 'name', 'Bench ' || c.n, 'code', 'bench-' || c.n,
           'time_zone', 'Europe/Berlin', 'plan', 'standard', 'slot_minutes', 15)),
       json_build_object('tenant_id', c.id, 'actor_id', '00000000-0000-0000-0000-000000000000',
           'actor_role', 'system', 'request_id', 'bench', 'occurred_at', now())
FROM (SELECT n, gen_random_uuid() AS id FROM generate_series(1, 10) n) c;
CREATE TEMP TABLE bench_clinics AS
SELECT row_number() OVER (ORDER BY position) - 1 AS k, tenant_id AS id FROM events;
CREATE TEMP TABLE bench_patients AS
SELECT p.n, (SELECT id FROM bench_clinics WHERE k = p.n % 10) AS clinic, gen_random_uuid() AS id
FROM generate_series(1, $PATIENTS) p(n);
INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata)
SELECT 'Patient', p.clinic || ':' || p.id, 1, 'PatientRegistered', '1.0',
       json_build_object('PatientRegistered', json_build_object(
           'patient_id', p.id, 'clinic_id', p.clinic, 'mrn', 'MRN-' || lpad(p.n::text, 6, '0'),
           'name', json_build_object('given', 'Given' || p.n, 'family', 'Família' || (p.n % 997)),
           'birth_date', (date '1950-01-01' + (p.n % 20000))::text, 'sex', 'female',
           'phone', '+4930' || lpad(p.n::text, 7, '0'), 'email', null, 'address', null,
           'emergency_contact', null, 'insurance', null, 'allergies', json_build_array('latex'))),
       json_build_object('tenant_id', p.clinic, 'actor_id', '00000000-0000-0000-0000-000000000000',
           'actor_role', 'system', 'request_id', 'bench', 'occurred_at', now())
FROM bench_patients p ORDER BY p.n;
INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata)
SELECT 'Patient', p.clinic || ':' || p.id, 2, 'PatientDemographicsUpdated', '1.0',
       json_build_object('PatientDemographicsUpdated', json_build_object(
           'name', null, 'birth_date', null, 'sex', null, 'phone', '+4940' || lpad(p.n::text, 7, '0'),
           'email', null, 'address', null, 'emergency_contact', null, 'insurance', null,
           'allergies', null)),
       json_build_object('tenant_id', p.clinic, 'actor_id', '00000000-0000-0000-0000-000000000000',
           'actor_role', 'system', 'request_id', 'bench', 'occurred_at', now())
FROM bench_patients p ORDER BY p.n;
ANALYZE events;
SQL
TOTAL=$(psql "$DB_URL" -Atc "SELECT count(*) FROM events")
echo "events in the store: $TOTAL"

START=$(date +%s.%N)
DATABASE_URL="$DB_URL" RUST_LOG=warn ./target/release/clinic rebuild
END=$(date +%s.%N)
python3 - "$TOTAL" "$START" "$END" <<'PY'
import sys
total, start, end = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3])
secs = end - start
print(f"rebuild of all projections: {total} events in {secs:.1f} s = {total / secs:.0f} events/s "
      f"(each projection reads every event: {4 * total / secs:.0f} event reads/s)")
PY
psql "$DB_URL" -Atc "SELECT 'rows: ' || (SELECT count(*) FROM rm.patients) || ' patients, ' || (SELECT sum(patient_count) FROM rm.clinics) || ' counted'"
