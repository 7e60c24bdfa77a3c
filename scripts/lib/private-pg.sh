# A private, throwaway PostgreSQL cluster for the scripts (sourced, not run).
#
#   source scripts/lib/private-pg.sh
#   private_pg_start DIR [RUNNER]   # initdb + start under DIR; exports DATABASE_URL (db postgres)
#   private_pg_restart [MODE]       # pg_ctl restart -m MODE (default fast)
#   private_pg_ctl_command ARGS...  # prints `pg_ctl ARGS` on the cluster as a shell command
#   private_pg_stop                 # stops it (safe to call twice); DIR is the caller's to remove
#
# RUNNER (optional) is a program every PostgreSQL binary is started through (test-shifted-clock
# passes its libfaketime wrapper). As root, PostgreSQL runs as the `postgres` OS user. The port
# is the first free one from 54329. Needs the server binaries under /usr/lib/postgresql/*/bin.

private_pg_bin=""
private_pg_dir=""
private_pg_data=""
private_pg_runner=()
private_pg_started=0
private_pg_port=""

private_pg_as() {
    if [[ $(id -u) -eq 0 ]]; then
        (cd "$private_pg_dir" && runuser -u postgres -- "${private_pg_runner[@]}" "$@")
    else
        (cd "$private_pg_dir" && "${private_pg_runner[@]}" "$@")
    fi
}

private_pg_start() {
    local dir=$1
    private_pg_runner=()
    [[ -n ${2:-} ]] && private_pg_runner=("$2")
    private_pg_bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1 || true)
    [[ -n $private_pg_bin && -x $private_pg_bin/initdb && -x $private_pg_bin/pg_ctl ]] || {
        echo "no PostgreSQL server binaries under /usr/lib/postgresql/*/bin (apt-get install postgresql)" >&2
        return 1
    }
    private_pg_dir=$dir/pg
    private_pg_data=$private_pg_dir/data
    mkdir -m 700 -p "$private_pg_dir" "$private_pg_dir/socket"
    if [[ $(id -u) -eq 0 ]]; then
        # PostgreSQL refuses to run as root.
        id -u postgres >/dev/null 2>&1 || {
            echo "running as root but there is no 'postgres' OS user to run PostgreSQL as" >&2
            return 1
        }
        chmod 711 "$dir"
        chown -R postgres: "$private_pg_dir"
    fi
    local port=54329
    while (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do
        port=$((port + 1))
        [[ $port -lt 54429 ]] || { echo "no free port in 54329-54428" >&2; return 1; }
    done
    private_pg_port=$port
    private_pg_as "$private_pg_bin/initdb" -D "$private_pg_data" -U postgres --auth=trust \
        --encoding=UTF8 --locale=C.UTF-8 --no-sync >"$private_pg_dir/initdb.log" 2>&1 || {
        cat "$private_pg_dir/initdb.log" >&2
        return 1
    }
    cat >>"$private_pg_data/postgresql.conf" <<EOF
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$private_pg_dir/socket'
max_connections = 200
fsync = off
synchronous_commit = off
full_page_writes = off
EOF
    private_pg_started=1
    private_pg_as "$private_pg_bin/pg_ctl" -D "$private_pg_data" -l "$private_pg_dir/server.log" \
        -w -t 60 start >/dev/null || {
        cat "$private_pg_dir/server.log" >&2
        return 1
    }
    export DATABASE_URL="postgres://postgres@127.0.0.1:$port/postgres"
}

private_pg_restart() {
    private_pg_as "$private_pg_bin/pg_ctl" -D "$private_pg_data" -l "$private_pg_dir/server.log" \
        -m "${1:-fast}" -w -t 60 restart >/dev/null
}

private_pg_stop() {
    [[ $private_pg_started -eq 1 ]] || return 0
    private_pg_started=0
    private_pg_as "$private_pg_bin/pg_ctl" -D "$private_pg_data" -m fast -w -t 30 stop >/dev/null 2>&1 ||
        private_pg_as "$private_pg_bin/pg_ctl" -D "$private_pg_data" -m immediate -w stop >/dev/null 2>&1
}

# Prints `pg_ctl ARGS...` on this cluster (-D, -l and the OS user filled in) as one shell
# command, for a program that drives the cluster on its own schedule (clinic-bench --faults):
#   private_pg_ctl_command -m fast -w -t 60 restart
private_pg_ctl_command() {
    local as="" arg args="" runner=""
    [[ $(id -u) -eq 0 ]] && as="runuser -u postgres --"
    # The same RUNNER as private_pg_as, so the command starts PostgreSQL as the script would.
    for arg in "${private_pg_runner[@]}"; do runner+="$(printf '%q' "$arg") "; done
    for arg in "$@"; do args+=" $(printf '%q' "$arg")"; done
    printf 'cd %q && %s %s%q -D %q -l %q%s >/dev/null' \
        "$private_pg_dir" "$as" "$runner" "$private_pg_bin/pg_ctl" "$private_pg_data" \
        "$private_pg_dir/server.log" "$args"
}
