#!/usr/bin/env bash
# Run the Autobahn TestSuite against the rfc6455 testee, strictly.
#
#   autobahn/run.sh [server|client|all]        (default: all)
#
#   server  wstest's fuzzingclient tests our echo server
#           (`rfc6455 echo --deflate --listen 127.0.0.1:$AUTOBAHN_SERVER_PORT`);
#           report in autobahn/reports/server/
#   client  our client (`rfc6455 autobahn-client --deflate --url ws://127.0.0.1:... --agent rfc6455`)
#           is tested by wstest's fuzzingserver; report in autobahn/reports/client/
#   all     both at once (each role is one Python process; on two cores
#           they run side by side), then both reports are checked
#
# Each role's report is then checked with autobahn/check.py; the exit status is
# non-zero if any role fails. Everything listens and connects on 127.0.0.1.
#
# Environment (all optional):
#   AUTOBAHN_SERVER_PORT        port of our echo server            (default 9001)
#   AUTOBAHN_FUZZINGSERVER_PORT port of wstest's fuzzingserver     (default 9002)
#   AUTOBAHN_RUN_TIMEOUT        seconds allowed for one role's run  (default 1200)
#   AUTOBAHN_BUILD_TIMEOUT      seconds allowed for cargo build     (default 1200)
#   AUTOBAHN_EXPECT_CASES       cases a full run must have          (default 517)
#   AUTOBAHN_NO_BUILD=1         skip `cargo build` (use the existing binary)
#   AUTOBAHN_TESTEE             testee binary        (default target/release/rfc6455)
#   AUTOBAHN_SERVER_EXAMPLE     server role only: test an example instead of
#                               `rfc6455 echo`: axum_echo or hyper_echo (built
#                               with --features axum|hyper, run as
#                               `target/release/examples/NAME 127.0.0.1:PORT`,
#                               echo at /ws). They leave permessage-deflate
#                               off, so sections 12 and 13 may be UNIMPLEMENTED.
#
# Logs of wstest and the testee go to target/autobahn-logs/.
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO_ROOT"   # the configs' report paths are relative to the repo root

ROLE="${1:-all}"
case "$ROLE" in
    server|client|all) ;;
    -h|--help) sed -n '2,32p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "usage: $0 [server|client|all]" >&2; exit 2 ;;
esac
[[ $# -le 1 ]] || { echo "usage: $0 [server|client|all]" >&2; exit 2; }

HOST=127.0.0.1
SERVER_PORT="${AUTOBAHN_SERVER_PORT:-9001}"
FUZZ_PORT="${AUTOBAHN_FUZZINGSERVER_PORT:-9002}"
RUN_TIMEOUT="${AUTOBAHN_RUN_TIMEOUT:-1200}"
BUILD_TIMEOUT="${AUTOBAHN_BUILD_TIMEOUT:-1200}"
EXPECT_CASES="${AUTOBAHN_EXPECT_CASES:-517}"
TESTEE="${AUTOBAHN_TESTEE:-target/release/rfc6455}"
EXAMPLE="${AUTOBAHN_SERVER_EXAMPLE:-}"
case "$EXAMPLE" in
    '') ;;
    axum_echo) EXAMPLE_FEATURE=axum ;;
    hyper_echo) EXAMPLE_FEATURE=hyper ;;
    *) echo "AUTOBAHN_SERVER_EXAMPLE must be axum_echo or hyper_echo, not $EXAMPLE" >&2; exit 2 ;;
esac
if [[ -n "$EXAMPLE" && "$ROLE" != server ]]; then
    echo "AUTOBAHN_SERVER_EXAMPLE tests the server role only: run.sh server" >&2
    exit 2
fi
AGENT=rfc6455
STARTUP_TIMEOUT=30     # seconds to wait for a background server's port
LOG_DIR="$REPO_ROOT/target/autobahn-logs"

log() { echo "[autobahn${AUTOBAHN_LOG_TAG:+ $AUTOBAHN_LOG_TAG}] $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# --- background processes: started here, killed by PID on exit ----------------

BG_PIDS=()
stop_pid() {
    local pid="$1" i
    kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; return 0; }
    kill -TERM "$pid" 2>/dev/null || true
    for i in $(seq 50); do                 # up to 5 s to exit on its own
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}
cleanup() {
    local pid
    for pid in "${BG_PIDS[@]+"${BG_PIDS[@]}"}"; do stop_pid "$pid"; done
    BG_PIDS=()
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

port_open() {   # does something accept TCP connections on $HOST:$1?
    (exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null
}

wait_for_port() {   # wait_for_port PORT PID LOGFILE
    local port="$1" pid="$2" logfile="$3" deadline=$((SECONDS + STARTUP_TIMEOUT))
    until port_open "$port"; do
        if ! kill -0 "$pid" 2>/dev/null; then
            tail -n 30 "$logfile" >&2 || true
            die "process $pid exited before listening on $HOST:$port (log: $logfile)"
        fi
        if ((SECONDS >= deadline)); then
            tail -n 30 "$logfile" >&2 || true
            die "nothing listens on $HOST:$port after ${STARTUP_TIMEOUT}s (log: $logfile)"
        fi
        sleep 0.2
    done
}

ensure_port_free() {
    port_open "$1" && die "port $HOST:$1 is already in use; stop that process or set AUTOBAHN_*_PORT"
    return 0
}

# wstest reads its settings from a JSON file; with non-default ports, use a
# copy of the config that has the port replaced.
config_for() {   # config_for CONFIG_FILE DEFAULT_PORT PORT [PATH] -> prints the file to use
    local config="$1" default_port="$2" port="$3" path="${4:-}"
    if [[ "$port" == "$default_port" && -z "$path" ]]; then
        echo "$config"
        return
    fi
    local copy="$LOG_DIR/$(basename "$config")"
    python3 - "$config" "$copy" "$default_port" "$port" "$path" <<'EOF'
import json, sys
src, dst, old, new, path = sys.argv[1:]
with open(src) as f:
    spec = json.load(f)
fix = lambda url: url.replace(":%s" % old, ":%s" % new) + path
if "url" in spec:
    spec["url"] = fix(spec["url"])
for server in spec.get("servers", []):
    server["url"] = fix(server["url"])
with open(dst, "w") as f:
    json.dump(spec, f, indent=2)
EOF
    echo "$copy"
}

# --- roles ----------------------------------------------------------------------

run_server_role() {
    local start=$SECONDS rc=0 pid
    local testee_log="$LOG_DIR/server-testee.log" wstest_log="$LOG_DIR/server-wstest.log"
    log "server role: wstest fuzzingclient -> our echo server on $HOST:$SERVER_PORT"
    ensure_port_free "$SERVER_PORT"
    rm -rf autobahn/reports/server

    local path=""
    if [[ -n "$EXAMPLE" ]]; then
        # The examples take the address as their first argument and serve
        # echo at /ws only.
        "target/release/examples/$EXAMPLE" "$HOST:$SERVER_PORT" >"$testee_log" 2>&1 &
        path=/ws
    else
        "$TESTEE" echo --deflate --listen "$HOST:$SERVER_PORT" >"$testee_log" 2>&1 &
    fi
    pid=$!
    BG_PIDS+=("$pid")
    wait_for_port "$SERVER_PORT" "$pid" "$testee_log"

    local config
    config="$(config_for autobahn/fuzzingclient.json 9001 "$SERVER_PORT" "$path")"
    log "running all cases (log: $wstest_log, limit ${RUN_TIMEOUT}s)"
    timeout "$RUN_TIMEOUT" "$WSTEST" -m fuzzingclient -s "$config" >"$wstest_log" 2>&1 || rc=$?
    if ! kill -0 "$pid" 2>/dev/null; then
        log "WARNING: the echo server exited during the run (log: $testee_log)"
    fi
    stop_pid "$pid"
    ROLE_TIME[server]=$((SECONDS - start))
    log "server role took ${ROLE_TIME[server]}s"
    if [[ $rc -ne 0 ]]; then
        tail -n 30 "$wstest_log" >&2 || true
        [[ $rc -eq 124 ]] && log "wstest fuzzingclient timed out after ${RUN_TIMEOUT}s"
        log "wstest fuzzingclient exited with status $rc"
        return 1
    fi
}

run_client_role() {
    local start=$SECONDS rc=0 pid
    local testee_log="$LOG_DIR/client-testee.log" wstest_log="$LOG_DIR/client-wstest.log"
    log "client role: our client -> wstest fuzzingserver on $HOST:$FUZZ_PORT"
    ensure_port_free "$FUZZ_PORT"
    rm -rf autobahn/reports/client

    local config
    config="$(config_for autobahn/fuzzingserver.json 9002 "$FUZZ_PORT")"
    # --webport 0: no embedded web server (it would listen on port 8080).
    "$WSTEST" -m fuzzingserver -s "$config" --webport 0 >"$wstest_log" 2>&1 &
    pid=$!
    BG_PIDS+=("$pid")
    wait_for_port "$FUZZ_PORT" "$pid" "$wstest_log"

    log "running all cases (log: $testee_log, limit ${RUN_TIMEOUT}s)"
    timeout "$RUN_TIMEOUT" "$TESTEE" autobahn-client --deflate --url "ws://$HOST:$FUZZ_PORT" --agent "$AGENT" \
        >"$testee_log" 2>&1 || rc=$?
    stop_pid "$pid"
    ROLE_TIME[client]=$((SECONDS - start))
    log "client role took ${ROLE_TIME[client]}s"
    if [[ $rc -ne 0 ]]; then
        tail -n 30 "$testee_log" >&2 || true
        [[ $rc -eq 124 ]] && log "the client testee timed out after ${RUN_TIMEOUT}s"
        log "the client testee exited with status $rc"
        return 1
    fi
}

# --- main -----------------------------------------------------------------------

mkdir -p "$LOG_DIR"
bash autobahn/install.sh
WSTEST="$(bash autobahn/install.sh --print-wstest 2>/dev/null)"
[[ -x "$WSTEST" ]] || die "wstest wrapper not found after install"

if [[ -n "$EXAMPLE" ]]; then
    if [[ "${AUTOBAHN_NO_BUILD:-0}" != 1 ]]; then
        log "cargo build --release --example $EXAMPLE --features $EXAMPLE_FEATURE"
        timeout "$BUILD_TIMEOUT" cargo build --release --example "$EXAMPLE" --features "$EXAMPLE_FEATURE" \
            || die "cargo build failed"
    fi
    [[ -x "target/release/examples/$EXAMPLE" ]] || die "example target/release/examples/$EXAMPLE not found"
    AGENT_CHECK_ARGS=(--allow-unimplemented 12,13)
else
    if [[ "${AUTOBAHN_NO_BUILD:-0}" != 1 ]]; then
        log "cargo build --release --bin rfc6455"
        timeout "$BUILD_TIMEOUT" cargo build --release --bin rfc6455 || die "cargo build failed"
    fi
    [[ -x "$TESTEE" ]] || die "testee binary $TESTEE not found"
    AGENT_CHECK_ARGS=()
fi

if [[ "$ROLE" == all ]]; then
    # The two roles share nothing but the binary just built: their own
    # ports, logs and report folders. Each runs as this script with one
    # role, in the background; the exit status is non-zero if either fails.
    log "running both roles at once"
    AUTOBAHN_NO_BUILD=1 AUTOBAHN_LOG_TAG=server bash "${BASH_SOURCE[0]}" server &
    server_pid=$!
    BG_PIDS+=("$server_pid")
    AUTOBAHN_NO_BUILD=1 AUTOBAHN_LOG_TAG=client bash "${BASH_SOURCE[0]}" client &
    client_pid=$!
    BG_PIDS+=("$client_pid")
    status=0
    wait "$server_pid" || { log "server role FAILED"; status=1; }
    wait "$client_pid" || { log "client role FAILED"; status=1; }
    BG_PIDS=()
    [[ $status -eq 0 ]] && log "both roles PASS"
    exit $status
fi
ROLES=("$ROLE")

declare -A ROLE_TIME=()
declare -A ROLE_RESULT=()
for role in "${ROLES[@]}"; do
    problems=()
    "run_${role}_role" || problems+=("run failed")
    # Check the report even after a failed run: it shows how far it got.
    python3 autobahn/check.py --agent "$AGENT" --expect-cases "$EXPECT_CASES" \
        "${AGENT_CHECK_ARGS[@]+"${AGENT_CHECK_ARGS[@]}"}" "$role" \
        || problems+=("report check failed")
    if [[ ${#problems[@]} -eq 0 ]]; then
        ROLE_RESULT[$role]=PASS
    else
        ROLE_RESULT[$role]="FAIL ($(IFS=,; echo "${problems[*]}" | sed 's/,/, /g'))"
    fi
done

status=0
log "summary:"
for role in "${ROLES[@]}"; do
    log "  $role: ${ROLE_RESULT[$role]}, took ${ROLE_TIME[$role]:-?}s"
    [[ "${ROLE_RESULT[$role]}" == PASS ]] || status=1
done
exit $status
