# Shared set-up for the bench scripts; source it after `set -euo pipefail`.
#   bench_database NAME   builds the release binary, creates database NAME_<pid> and drops it
#                         (and stops $SERVER, if set) on exit. Sets ADMIN_URL, DB, DB_URL, PORT.
# Uses PostgreSQL on 127.0.0.1:5432 as `postgres` (or $BENCH_PG_URL, a URL to an admin database).
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ADMIN_URL="${BENCH_PG_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
bench_database() {
    DB="$1_$$"
    DB_URL="${ADMIN_URL%/*}/$DB"
    PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    cargo build --release --bin clinic -q
    psql "$ADMIN_URL" -qc "CREATE DATABASE $DB"
    trap bench_cleanup EXIT
}
bench_cleanup() {
    [ -n "${SERVER:-}" ] && kill "$SERVER" 2>/dev/null && wait "$SERVER" 2>/dev/null || true
    psql "$ADMIN_URL" -qc "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null
}
#   bench_serve [VAR=value ...]   starts the release `clinic serve` on $PORT with the given extra
#                                 environment, sets SERVER to its pid, and waits until /readyz answers.
bench_serve() {
    env "$@" CLINIC_BIND="127.0.0.1:$PORT" CLINIC_JWT_SECRET="bench-secret-bench-secret-bench-secret" \
        ./target/release/clinic serve & SERVER=$!
    python3 - "$PORT" <<'PY'
import sys, time, urllib.request
for _ in range(100):
    try:
        urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/readyz"); break
    except Exception:
        time.sleep(0.1)
PY
}
