# Shared by compare.sh and chat-scale.sh (sourced, not run): waiting for a
# server to listen, and stopping it. Both scripts keep the running server's
# PID in `server_pid` and only ever kill that one.

# await_listening NAME PORT LOG: returns once 127.0.0.1:PORT accepts a
# connection; after 10 s, prints LOG and exits.
await_listening() {
    local name=$1 port=$2 log=$3 i
    for i in $(seq 100); do
        if (echo >"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            return 0
        fi
        sleep 0.1
    done
    echo "$(basename "$0"): $name did not start listening; its log:" >&2
    cat "$log" >&2
    exit 1
}

# stop_server: stops the server this script started (server_pid), and lets
# TIME_WAIT and the kernel settle before the next run.
stop_server() {
    kill "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
    server_pid=
    sleep 1
}

# loadavg: the 1, 5 and 15 minute load averages.
loadavg() { cut -d' ' -f1-3 /proc/loadavg; }
