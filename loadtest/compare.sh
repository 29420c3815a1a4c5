#!/usr/bin/env bash
# Runs one load scenario against our servers and the peers, one after
# another with the same load, and prints a markdown table (also appended,
# with the machine and the date, to loadtest/results/).
#
#   loadtest/compare.sh echo-small|echo-large|broadcast|idle|all
#
# Each server runs pinned to core 0 (taskset -c 0), the load generator to
# core 1. The generator reads the server's CPU time (utime+stime of
# /proc/PID/stat) and RSS (VmRSS) at the start and end of the measured
# window, so the table can say which side was the limit: a side that used
# 90 % or more of its core is "server-bound" or "generator-bound".
#
# Installs what it needs when missing: the npm packages of loadtest/node
# (npm ci), the loadtest workspace and the root `rfc6455` binary (release).
# LOADTEST_NO_BUILD=1 skips the builds.
#
# Knobs (environment): SECS (measured seconds per run, default 10),
# WARMUP (echo, default 1), IDLE_CONNS (default 10000), IDLE_HOLD (default
# 5), BCAST_SUBS (500), BCAST_SENDERS (5), BCAST_RATE (100), ROUNDS (echo
# scenarios: rounds of every server, interleaved; default 1), ECHO_SERVERS
# (which echo servers, default all).
#
# Every echo table has a raw-tcp row: peer-rawtcp driven by `loadgen echo
# --raw`, the same recv/send with no WebSocket at all, the physical limit
# the others are given as a fraction of.
#
# Load stays on 127.0.0.1; every run is bounded and stops by itself; only
# the processes this script started are ever killed, by PID.
set -euo pipefail

scenario=${1:-}
case $scenario in
    echo-small | echo-large | broadcast | idle | all) ;;
    *)
        echo "usage: $0 echo-small|echo-large|broadcast|idle|all" >&2
        exit 2
        ;;
esac

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
# shellcheck source=loadtest/lib.sh
. "$here/lib.sh"
SECS=${SECS:-10}
WARMUP=${WARMUP:-1}
IDLE_CONNS=${IDLE_CONNS:-10000}
IDLE_HOLD=${IDLE_HOLD:-5}
BCAST_SUBS=${BCAST_SUBS:-500}
BCAST_SENDERS=${BCAST_SENDERS:-5}
BCAST_RATE=${BCAST_RATE:-100}
ROUNDS=${ROUNDS:-1}
round=1

# --- 1. what it needs ---
as_root() {
    if [[ $(id -u) == 0 ]]; then "$@"; else sudo "$@"; fi
}
if ! command -v taskset >/dev/null 2>&1; then
    as_root apt-get update && as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y util-linux
fi
if ! command -v jq >/dev/null 2>&1; then
    as_root apt-get update && as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y jq
fi
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    as_root apt-get update && as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y nodejs npm
fi
if (($(nproc) < 2)); then
    echo "compare.sh: needs 2 cores (server on one, generator on the other)" >&2
    exit 1
fi
lock_sum=$(cat "$here/node/package-lock.json" "$here/node/package.json" | sha256sum | cut -d' ' -f1)
stamp=$here/node/node_modules/.installed-from
if [[ ! -f $stamp || $(cat "$stamp") != "$lock_sum" ]]; then
    echo "==> npm ci (loadtest/node)" >&2
    (cd "$here/node" && npm ci --no-audit --no-fund >&2)
    echo "$lock_sum" >"$stamp"
fi
if [[ ${LOADTEST_NO_BUILD:-} != 1 ]]; then
    echo "==> cargo build --release (loadtest workspace)" >&2
    cargo build --release --manifest-path "$here/Cargo.toml" --bins >&2
    echo "==> cargo build --release --bin rfc6455" >&2
    cargo build --release --manifest-path "$root/Cargo.toml" --bin rfc6455 >&2
fi
bin=$here/target/release
rfc6455=$root/target/release/rfc6455
for b in "$bin/loadgen" "$bin/ours-broadcast" "$bin/peer-tungstenite" "$bin/peer-fastwebsockets" "$bin/peer-rawtcp" "$rfc6455"; do
    [[ -x $b ]] || { echo "compare.sh: $b is missing" >&2; exit 1; }
done

# 10,000 idle connections need 10,000 descriptors on each side.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
if (($(ulimit -n) < IDLE_CONNS + 100)) && [[ $scenario == idle || $scenario == all ]]; then
    echo "compare.sh: ulimit -n is $(ulimit -n), too low for $IDLE_CONNS connections" >&2
    exit 1
fi

# --- 2. servers ---
# Every server gets a port of its own (TIME_WAIT from one run must not
# collide with the next), counted up from here.
next_port=$((19200 + RANDOM % 500))
server_pid=
server_port=
workdir=$(mktemp -d /tmp/loadtest.XXXXXX)
cleanup() {
    if [[ -n $server_pid ]]; then
        kill "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
    fi
    rm -rf "$workdir"
}
trap cleanup EXIT

# start_server NAME MODE: runs it on core 0, sets server_pid and server_port.
start_server() {
    local name=$1 mode=$2
    server_port=$next_port
    next_port=$((next_port + 1))
    local listen=127.0.0.1:$server_port
    local cmd
    case $name in
        ours) cmd=("$rfc6455" echo --listen "$listen") ;;
        ours-broadcast) cmd=("$bin/ours-broadcast" --listen "$listen") ;;
        ours-chat) cmd=("$rfc6455" chat --listen "$listen" --db "$workdir/chat-$server_port.db" --no-rate-limit --no-deflate --max-per-ip 0 --max-handshakes-per-ip 0) ;;
        tungstenite) cmd=("$bin/peer-tungstenite" "$mode" --listen "$listen") ;;
        fastwebsockets) cmd=("$bin/peer-fastwebsockets" "$mode" --listen "$listen") ;;
        raw-tcp) cmd=("$bin/peer-rawtcp" "$mode" --listen "$listen") ;;
        node-ws) cmd=(node "$here/node/ws-server.js" "$mode" --listen "$listen") ;;
        socketio) cmd=(node "$here/node/socketio-chat.js" --listen "$listen") ;;
        *) echo "unknown server $name" >&2; exit 1 ;;
    esac
    RUST_LOG=warn taskset -c 0 "${cmd[@]}" >"$workdir/$name-$server_port.log" 2>&1 &
    server_pid=$!
    await_listening "$name" "$server_port" "$workdir/$name-$server_port.log"
}

# gen NAME ARGS...: runs the generator on core 1 against the running
# server, prints its human line on stderr, and appends its JSON (plus the
# server's name and the load average) to $jsonl.
gen() {
    local name=$1
    shift
    local load out
    load=$(loadavg)
    out=$(taskset -c 1 "$bin/loadgen" "$@" --pid "$server_pid") || {
        echo "compare.sh: loadgen failed against $name" >&2
        return 0
    }
    echo "  $name: $(grep '^# ' <<<"$out" | cut -c3-)  [load $load]" >&2
    grep '^{' <<<"$out" | jq -c --arg s "$name" --arg l "$load" --arg t "$(date -u +%FT%TZ)" --argjson r "${round:-1}" \
        '. + {server: $s, load: $l, time: $t, round: $r}' | tee -a "$all_jsonl" >>"$jsonl"
}

# --- 3. tables ---
throughput_table() {
    echo "| server | round | msgs/s | p50 µs | p99 µs | p99.9 µs | loss | server CPU s | server RSS MiB | msgs per server CPU-s | gen CPU s | saturated | load before |"
    echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|"
    jq -r '"| \(.server) | \(.round // 1) | \(.msgs_per_s) | \(.p50_us|floor) | \(.p99_us|floor) | \(.p999_us|floor) | \(.loss)\(if .errors > 0 then " (\(.errors) errors)" else "" end) | \(.server_cpu_s) | \((.server_rss_bytes // 0) / 1048576 * 10 | floor / 10) | \(.msgs_per_server_cpu_s) | \(.gen_cpu_s) | \(.saturated) | \(.load) |"' "$1"
    # Ours against the best peer (by msgs/s, and by msgs per CPU-second).
    jq -rs '
      group_by(.round // 1)[]
      | (map(select(.server | startswith("ours")))) as $ours
      | (map(select((.server | startswith("ours") | not) and .server != "raw-tcp"))) as $peers
      | if ($ours | length) == 0 or ($peers | length) == 0 then empty else
        ($peers | max_by([.msgs_per_s, -.p99_us])) as $bt
        | ($peers | max_by(.msgs_per_server_cpu_s // 0)) as $bc
        | $ours[]
        | . as $o
        | "\nRound \($o.round // 1): ours (\($o.server)) against the best peer: throughput \(($o.msgs_per_s / $bt.msgs_per_s * 100 | round) / 100)x \($bt.server); per server CPU-second \((($o.msgs_per_server_cpu_s // 0) / ($bc.msgs_per_server_cpu_s // 1) * 100 | round) / 100)x \($bc.server); p99 \($o.p99_us|floor) µs against \($bt.p99_us|floor) µs (\($bt.server)); loss \($o.loss)."
        end' "$1"
    # Ours as a fraction of the physical limit (the raw TCP echo, issue 21).
    jq -rs '
      group_by(.round // 1)[]
      | (map(select(.server == "raw-tcp"))) as $raw
      | if ($raw | length) == 0 then empty else
        $raw[0] as $r
        | map(select(.server != "raw-tcp"))[]
        | "Round \(.round // 1): \(.server) as a fraction of raw TCP: per server CPU-second \(((.msgs_per_server_cpu_s // 0) / ($r.msgs_per_server_cpu_s // 1) * 100 | round) / 100); throughput \((.msgs_per_s / $r.msgs_per_s * 100 | round) / 100)."
        end' "$1"
}

idle_table() {
    echo "| server | connections open | RSS before MiB | RSS after MiB | bytes per connection | KiB per connection | load before |"
    echo "|---|---:|---:|---:|---:|---:|---|"
    jq -r '"| \(.server) | \(.open) of \(.conns)\(if .dropped > 0 then " (\(.dropped) dropped)" else "" end) | \(.rss_before_bytes / 1048576 * 10 | floor / 10) | \(.rss_end_bytes / 1048576 * 10 | floor / 10) | \(.bytes_per_conn) | \(.bytes_per_conn / 1024 * 100 | floor / 100) | \(.load) |"' "$1"
}

# --- 4. scenarios ---
# raw-tcp is the physical limit: the same load with no WebSocket at all
# (loadgen echo --raw against peer-rawtcp). It has echo rows only.
read -r -a echo_servers <<<"${ECHO_SERVERS:-raw-tcp ours tungstenite fastwebsockets node-ws}"
idle_servers=(ours tungstenite fastwebsockets node-ws)

run_echo() { # TITLE ARGS...
    local title=$1
    shift
    jsonl=$workdir/$(tr ' ' '-' <<<"$title").jsonl
    : >"$jsonl"
    echo "==> $title" >&2
    local s raw
    # Rounds are interleaved (every server once, then again), so a change
    # in the machine's load shows as spread between rounds, not as a
    # difference between servers.
    for round in $(seq "$ROUNDS"); do
        for s in "${echo_servers[@]}"; do
            raw=()
            [[ $s == raw-tcp ]] && raw=(--raw)
            start_server "$s" echo
            gen "$s" echo --url "ws://127.0.0.1:$server_port/" --secs "$SECS" --warmup "$WARMUP" "${raw[@]}" "$@"
            stop_server
        done
    done
    round=1
    {
        echo
        echo "### $title"
        echo
        echo "\`loadgen echo $* --secs $SECS --warmup $WARMUP\`"
        echo
        throughput_table "$jsonl"
    } >>"$report"
}

run_broadcast() {
    local title="broadcast: $BCAST_SUBS subscribers, $BCAST_SENDERS senders x $BCAST_RATE/s"
    jsonl=$workdir/broadcast.jsonl
    : >"$jsonl"
    echo "==> $title" >&2
    local args=(--subs "$BCAST_SUBS" --senders "$BCAST_SENDERS" --rate "$BCAST_RATE" --secs "$SECS")
    local s
    for s in ours-broadcast tungstenite fastwebsockets node-ws; do
        start_server "$s" broadcast
        gen "$s" broadcast --url "ws://127.0.0.1:$server_port/" --proto raw "${args[@]}"
        stop_server
    done
    start_server socketio -
    gen socketio broadcast --url "ws://127.0.0.1:$server_port" --proto socketio "${args[@]}"
    stop_server
    start_server ours-chat -
    gen ours-chat broadcast --url "ws://127.0.0.1:$server_port/ws" --proto chat "${args[@]}"
    stop_server
    {
        echo
        echo "### $title"
        echo
        echo "\`loadgen broadcast ${args[*]} --proto raw|socketio|chat\` (raw: every text frame to every connection; socketio: the tutorial's chat; ours-chat: \`rfc6455 chat --no-rate-limit --no-deflate --max-per-ip 0 --max-handshakes-per-ip 0\`, JSON protocol, room \`general\`)"
        echo
        throughput_table "$jsonl"
    } >>"$report"
}

run_idle() {
    local title="idle: $IDLE_CONNS connections held ${IDLE_HOLD} s"
    jsonl=$workdir/idle.jsonl
    : >"$jsonl"
    echo "==> $title" >&2
    local s
    for s in "${idle_servers[@]}"; do
        start_server "$s" echo
        gen "$s" idle --url "ws://127.0.0.1:$server_port/" --conns "$IDLE_CONNS" --hold "$IDLE_HOLD"
        stop_server
    done
    {
        echo
        echo "### $title"
        echo
        echo "\`loadgen idle --conns $IDLE_CONNS --hold $IDLE_HOLD\` (RSS growth of the echo server from before the first connection to the end of the hold, divided by the connections)"
        echo
        idle_table "$jsonl"
    } >>"$report"
}

mkdir -p "$here/results"
stamp_time=$(date -u +%Y-%m-%dT%H:%M:%SZ)
report=$workdir/report.md
all_jsonl=$here/results/$(date -u +%Y-%m-%d)-$scenario.jsonl
{
    echo
    echo "## $scenario, $stamp_time"
    echo
    echo "- machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), kernel $(uname -r), $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo)"
    echo "- rustc: $(rustc --version), node: $(node --version)"
    echo "- commit: $(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)$(git -C "$root" diff --quiet 2>/dev/null || echo ' (with local changes)')"
    echo "- load average at start: $(loadavg)"
    echo "- servers on core 0, loadgen on core 1; SECS=$SECS, ROUNDS=$ROUNDS"
} >"$report"

case $scenario in
    echo-small)
        run_echo "echo-small: 100 conns x 32 B, 1 in flight" --conns 100 --size 32 --inflight 1
        run_echo "echo-small: 100 conns x 32 B, 16 in flight" --conns 100 --size 32 --inflight 16
        ;;
    echo-large) run_echo "echo-large: 10 conns x 64 KiB, 1 in flight" --conns 10 --size 65536 --inflight 1 --binary ;;
    broadcast) run_broadcast ;;
    idle) run_idle ;;
    all)
        run_echo "echo-small: 100 conns x 32 B, 1 in flight" --conns 100 --size 32 --inflight 1
        run_echo "echo-small: 100 conns x 32 B, 16 in flight" --conns 100 --size 32 --inflight 16
        run_echo "echo-large: 10 conns x 64 KiB, 1 in flight" --conns 10 --size 65536 --inflight 1 --binary
        run_broadcast
        run_idle
        ;;
esac

results=$here/results/$(date -u +%Y-%m-%d)-$scenario.md
cat "$report" >>"$results"
cat "$report"
echo >&2
echo "(appended to ${results#"$root"/})" >&2
