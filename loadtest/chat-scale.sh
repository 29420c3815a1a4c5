#!/usr/bin/env bash
# The chat at the scale of one machine (issue 15): join storms, one big
# room's broadcast, and broadcast at saturation against the Socket.IO chat.
#
#   loadtest/chat-scale.sh join        # 5,000 / 10,000 / 19,000 members joining `general`
#   loadtest/chat-scale.sh bigroom     # one message a second to a room of 19,000
#   loadtest/chat-scale.sh saturation  # 1,000 members, 10 senders, rising rate
#   loadtest/chat-scale.sh all
#
# As in compare.sh, each server runs on core 0 (taskset -c 0) and loadgen on
# core 1; every run is bounded, targets 127.0.0.1 and stops by itself, and
# only the processes started here are killed, by PID. The rounds are
# interleaved (each round runs every configuration once), so that a change
# in the machine's load shows as spread between rounds, not as a
# difference between configurations; every run's JSON line carries the
# load average before it.
#
# Knobs (environment):
#   ROUNDS (2); JOIN_SIZES ("5000 10000 19000"); BEFORE (a second rfc6455
#   binary, e.g. built from an older commit: `join` runs it beside ours);
#   BIG_SUBS (19000); BIG_SECS (10); SAT_SUBS (1000); SAT_SENDERS (10);
#   SAT_SECS (5); SAT_RATES_OURS ("10 20 40 60 80 100");
#   SAT_RATES_SOCKETIO ("1 2 4 6 8").
#   LOADTEST_NO_BUILD=1 skips the builds.
#
# 19,000 connections need 19,000 descriptors on each side: the script
# raises its soft limit to the hard limit and stops if that is too low.
set -euo pipefail

scenario=${1:-}
case $scenario in
    join | bigroom | saturation | all) ;;
    *)
        echo "usage: $0 join|bigroom|saturation|all" >&2
        exit 2
        ;;
esac

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
ROUNDS=${ROUNDS:-2}
JOIN_SIZES=${JOIN_SIZES:-5000 10000 19000}
BEFORE=${BEFORE:-}
BIG_SUBS=${BIG_SUBS:-19000}
BIG_SECS=${BIG_SECS:-10}
SAT_SUBS=${SAT_SUBS:-1000}
SAT_SENDERS=${SAT_SENDERS:-10}
SAT_SECS=${SAT_SECS:-5}
SAT_RATES_OURS=${SAT_RATES_OURS:-10 20 40 60 80 100}
SAT_RATES_SOCKETIO=${SAT_RATES_SOCKETIO:-1 2 4 6 8}

ulimit -n "$(ulimit -Hn)"
if (($(ulimit -n) < 19600)); then
    echo "chat-scale.sh: needs 19,600 file descriptors, the hard limit is $(ulimit -Hn)" >&2
    exit 1
fi
for tool in taskset jq node; do
    command -v "$tool" >/dev/null 2>&1 || {
        echo "chat-scale.sh: needs $tool (loadtest/compare.sh installs it)" >&2
        exit 1
    }
done

bin=$here/target/release
rfc6455=$root/target/release/rfc6455
if [[ -z ${LOADTEST_NO_BUILD:-} ]]; then
    (cd "$here/node" && npm ci --no-audit --no-fund --silent)
    cargo build --release --manifest-path "$here/Cargo.toml" -p loadgen -p ours-broadcast
    cargo build --release --manifest-path "$root/Cargo.toml" --bin rfc6455
fi

workdir=$(mktemp -d)
server_pid=
cleanup() {
    if [[ -n $server_pid ]]; then
        kill "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
    fi
    rm -rf "$workdir"
}
trap cleanup EXIT
next_port=$((20000 + RANDOM % 20000))

# start NAME: runs it on core 0; sets server_pid, server_port, url.
start() {
    local name=$1 cmd
    server_port=$next_port
    next_port=$((next_port + 1))
    local listen=127.0.0.1:$server_port
    local chat=(chat --listen "$listen" --db "$workdir/chat-$server_port.db" --no-rate-limit --no-deflate
        --max-per-ip 0 --max-handshakes-per-ip 0)
    url=ws://$listen/ws
    case $name in
        ours-chat) cmd=("$rfc6455" "${chat[@]}") ;;
        before-chat) cmd=("$BEFORE" "${chat[@]}") ;;
        ours-broadcast) cmd=("$bin/ours-broadcast" --listen "$listen") && url=ws://$listen/ ;;
        socketio) cmd=(node "$here/node/socketio-chat.js" --listen "$listen") && url=ws://$listen ;;
        *) echo "unknown server $name" >&2 && exit 1 ;;
    esac
    RUST_LOG=warn taskset -c 0 "${cmd[@]}" >"$workdir/$name-$server_port.log" 2>&1 &
    server_pid=$!
    local i
    for i in $(seq 100); do
        (echo >"/dev/tcp/127.0.0.1/$server_port") 2>/dev/null && return 0
        sleep 0.1
    done
    echo "chat-scale.sh: $name did not start; its log:" >&2
    cat "$workdir/$name-$server_port.log" >&2
    exit 1
}

stop() {
    kill "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
    server_pid=
    sleep 1
}

# gen NAME ROUND ARGS...: loadgen on core 1 against the running server;
# its JSON line, with the server, the round and the load, goes to $jsonl.
gen() {
    local name=$1 round=$2 load out
    shift 2
    load=$(cut -d' ' -f1-3 /proc/loadavg)
    out=$(taskset -c 1 "$bin/loadgen" "$@" --pid "$server_pid") || {
        echo "chat-scale.sh: loadgen failed against $name" >&2
        return 0
    }
    echo "  [$round] $name: $(grep '^# ' <<<"$out" | cut -c3-)  [load $load]" >&2
    grep '^{' <<<"$out" | jq -c --arg s "$name" --arg l "$load" --argjson r "$round" \
        '. + {server: $s, load: $l, round: $r}' >>"$jsonl"
}

join_storm() {
    jsonl=$workdir/join.jsonl
    local servers=(ours-chat) r n s
    [[ -n $BEFORE ]] && servers+=(before-chat)
    for r in $(seq "$ROUNDS"); do
        for n in $JOIN_SIZES; do
            for s in "${servers[@]}"; do
                start "$s"
                gen "$s" "$r" idle --url "$url" --conns "$n" --hold 2 --hello
                stop
            done
        done
    done
    {
        echo
        echo "### join storm: N members say \`hello\` into \`general\`"
        echo
        echo "\`loadgen idle --conns N --hold 2 --hello\` (200 handshakes at a time; a member counts once its history page came)"
        echo
        echo "| server | N | round | connect + join all s | server CPU s | server CPU µs per join | RSS per member B | kernel TCP buffers MiB | kernel slab B per socket | load before |"
        echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"
        jq -r '"| \(.server) | \(.conns) | \(.round) | \(.connect_secs) | \(.server_cpu_s) | \(.server_cpu_s / .conns * 1e6 | floor) | \(.bytes_per_conn) | \((.tcp_mem_end_bytes - .tcp_mem_before_bytes) / 1048576 * 10 | floor / 10) | \(.slab_per_socket_bytes // "-") | \(.load) |"' "$jsonl"
    } >>"$report"
}

big_room() {
    jsonl=$workdir/bigroom.jsonl
    local args=(--subs "$BIG_SUBS" --senders 1 --rate 1 --secs "$BIG_SECS") r
    for r in $(seq "$ROUNDS"); do
        start ours-chat
        gen ours-chat "$r" broadcast --url "$url" --proto chat "${args[@]}"
        stop
        start ours-broadcast
        gen ours-broadcast "$r" broadcast --url "$url" --proto raw "${args[@]}"
        stop
    done
    {
        echo
        echo "### one room of $BIG_SUBS: one message a second for $BIG_SECS s"
        echo
        echo "\`loadgen broadcast ${args[*]} --proto chat|raw\` (ours-broadcast: the transport alone, every frame to every connection, no chat)"
        echo
        echo "| server | round | deliveries | loss | p50 ms | p99 ms | max ms | server CPU s | load before |"
        echo "|---|---:|---:|---:|---:|---:|---:|---:|---|"
        jq -r '"| \(.server) | \(.round) | \(.received) of \(.expected) | \(.loss) | \(.p50_us / 1000 | floor) | \(.p99_us / 1000 | floor) | \(.max_us / 1000 | floor) | \(.server_cpu_s) | \(.load) |"' "$jsonl"
    } >>"$report"
}

saturation() {
    jsonl=$workdir/saturation.jsonl
    local args=(--subs "$SAT_SUBS" --senders "$SAT_SENDERS" --secs "$SAT_SECS") r rate
    for r in $(seq "$ROUNDS"); do
        for rate in $SAT_RATES_SOCKETIO; do
            start socketio
            gen socketio "$r" broadcast --url "$url" --proto socketio --rate "$rate" "${args[@]}"
            stop
        done
        for rate in $SAT_RATES_OURS; do
            start ours-chat
            gen ours-chat "$r" broadcast --url "$url" --proto chat --rate "$rate" "${args[@]}"
            stop
        done
    done
    {
        echo
        echo "### saturation: $SAT_SUBS members in one room, $SAT_SENDERS senders, rising rate"
        echo
        echo "\`loadgen broadcast ${args[*]} --rate R --proto chat|socketio\`; offered = senders × R messages a second, each to every member. **ok**: zero loss and p99 under 100 ms."
        echo
        echo "| server | round | offered msgs/s | deliveries/s | loss | p50 ms | p99 ms | server CPU s | ok | load before |"
        echo "|---|---:|---:|---:|---:|---:|---:|---:|---|---|"
        jq -r '"| \(.server) | \(.round) | \(.senders * .rate) | \(.msgs_per_s) | \(.loss) | \(.p50_us / 1000 | floor) | \(.p99_us / 1000 | floor) | \(.server_cpu_s) | \(if .loss == 0 and .p99_us < 100000 then "ok" else "-" end) | \(.load) |"' "$jsonl"
        echo
        echo "Highest offered rate that was ok in every round:"
        echo
        jq -rs 'group_by(.server)[] | . as $runs | ($runs[0].server) as $s
          | ($runs | group_by(.senders * .rate) | map(select(all(.loss == 0 and .p99_us < 100000)) | .[0].senders * .[0].rate) | max // 0) as $best
          | "- \($s): \($best) msgs/s (\($best * '"$SAT_SUBS"') deliveries/s)"' "$jsonl"
    } >>"$report"
}

mkdir -p "$here/results"
report=$workdir/report.md
{
    echo
    echo "## chat-scale $scenario, $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo
    echo "- machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), kernel $(uname -r)"
    echo "- commit: $(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)$(git -C "$root" diff --quiet 2>/dev/null || echo ' (with local changes)')"
    echo "- load average at start: $(cut -d' ' -f1-3 /proc/loadavg); servers on core 0, loadgen on core 1; ROUNDS=$ROUNDS"
} >"$report"

case $scenario in
    join) join_storm ;;
    bigroom) big_room ;;
    saturation) saturation ;;
    all) join_storm && big_room && saturation ;;
esac

results=$here/results/$(date -u +%Y-%m-%d)-chat-scale.md
cat "$report" >>"$results"
cat "$report"
echo >&2
echo "(appended to ${results#"$root"/})" >&2
