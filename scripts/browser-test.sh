#!/usr/bin/env bash
# The browser test: the chat server and its web UI (web/) in a real
# Chromium, driven by playwright-core (tests/browser/chat.test.mjs). The
# scenario runs twice: over http and ws://, then over https and wss://
# with the server started with --tls-cert/--tls-key on a self-signed
# certificate made here (Chromium runs with --ignore-certificate-errors;
# node trusts the certificate through NODE_EXTRA_CA_CERTS). A third test
# takes a page off the network while 300 long messages are posted, and
# checks that its resume shows the newest ones and pages back through the
# `gap` (docs/PROTOCOL.md). A fourth fills a room with more members than
# one page and checks the count, the "more" button and the search box.
# tests/browser/features.test.mjs drives the everyday features (drafts,
# formatting, the offline banner, refused posts, contrast with axe-core in
# both themes, signing in with a token, …) with two users each.
# tests/browser/accounts.test.mjs (issue 17) signs two users up, logs them
# out and in, and has a room's owner mute, kick and audit the other, with
# guests, blocking, slow mode and a server-wide ban (--accounts open).
#
# Installs what it needs when missing (Debian's chromium and openssl
# packages; the npm dependencies in tests/browser/), builds the server,
# then runs the test. Safe to run again: installs are skipped when already
# done.
#
#   scripts/browser-test.sh                          build, then test
#   BROWSER_TEST_NO_BUILD=1 scripts/browser-test.sh  use the existing target/release/rfc6455
#   BROWSER_TEST_WEB_DIR=web node --test tests/browser/  while working on the page: serve
#                                                    web/ from disk (no rebuild; see harness.mjs)
#
# Screenshots of both users' pages end up in target/browser-alice.png and
# target/browser-bob.png (target/browser-tls-*.png for the https run).
# Exits with the test's status.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

as_root() {
    if [[ $(id -u) -eq 0 ]]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        echo "browser-test: need root (or sudo) to run: $*" >&2
        exit 1
    fi
}

# --- 1. Chromium (Debian's, not a downloaded browser build) ---
if [[ ! -x /usr/bin/chromium ]]; then
    echo "==> installing chromium"
    as_root apt-get update
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y chromium
fi

# openssl, to make the test's certificate.
if ! command -v openssl >/dev/null 2>&1; then
    echo "==> installing openssl"
    as_root apt-get update
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y openssl
fi

# --- 2. node and the test's npm dependencies ---
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    echo "browser-test: node (20 or later) and npm are required" >&2
    exit 1
fi
node_major=$(node -p 'process.versions.node.split(".")[0]')
if (( node_major < 20 )); then
    echo "browser-test: node 20 or later is required (found $(node --version))" >&2
    exit 1
fi
# npm ci when node_modules is missing or was installed from another lockfile.
lock_sum=$(sha256sum tests/browser/package-lock.json tests/browser/package.json | sha256sum | cut -d' ' -f1)
stamp=tests/browser/node_modules/.installed-from
if [[ ! -f $stamp || $(cat "$stamp") != "$lock_sum" ]]; then
    echo "==> npm ci (tests/browser)"
    (cd tests/browser && npm ci --no-audit --no-fund)
    echo "$lock_sum" >"$stamp"
fi

# --- 3. the server ---
if [[ ${BROWSER_TEST_NO_BUILD:-} != 1 ]]; then
    echo "==> cargo build --release --bin rfc6455"
    cargo build --release --bin rfc6455
fi
if [[ ! -x target/release/rfc6455 ]]; then
    echo "browser-test: target/release/rfc6455 is missing (unset BROWSER_TEST_NO_BUILD to build it)" >&2
    exit 1
fi

# --- 4. a certificate for the https run ---
# Self-signed, for the names the test uses, made anew each run (a day's
# validity is plenty). CA:FALSE so that rustls-based clients also accept
# it as its own trust anchor (`rfc6455 client --ca`); P-256 for speed.
tls_dir=target/browser-tls
mkdir -p "$tls_dir"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 \
    -subj /CN=localhost \
    -addext subjectAltName=DNS:localhost,IP:127.0.0.1 \
    -addext basicConstraints=critical,CA:FALSE \
    -keyout "$tls_dir/key.pem" -out "$tls_dir/cert.pem" 2>/dev/null

# --- 5. the test ---
echo "==> node --test tests/browser/"
status=0
CHAT_TLS_CERT="$PWD/$tls_dir/cert.pem" CHAT_TLS_KEY="$PWD/$tls_dir/key.pem" \
    NODE_EXTRA_CA_CERTS="$PWD/$tls_dir/cert.pem" \
    node --test tests/browser/ || status=$?
exit "$status"
