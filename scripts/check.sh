#!/usr/bin/env bash
# The test command: installs what the tests need, then formats, lints,
# tests, documents, runs the Autobahn TestSuite in both roles and gives
# every fuzz target a short run.
# Exits non-zero on any failure. Safe to run again: installs are skipped
# when already done.
#
#   scripts/check.sh            everything
#   CHECK_SKIP_AUTOBAHN=1 CHECK_SKIP_FUZZ=1 CHECK_SKIP_BROWSER=1 scripts/check.sh   quick
#   CHECK_FUZZ_SECONDS=60 scripts/check.sh                      longer fuzz runs (default 20 s each)
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

step_names=()
step_times=()
run_step() {
    local name="$1"
    shift
    echo
    echo "==> $name"
    local start=$SECONDS
    "$@"
    step_names+=("$name")
    step_times+=("$((SECONDS - start))")
}

summary() {
    echo
    echo "==> summary"
    for i in "${!step_names[@]}"; do
        printf '  %-44s %5ss\n' "${step_names[$i]}" "${step_times[$i]}"
    done
}

# --- 1. install -------------------------------------------------------------

as_root() {
    if [[ $(id -u) -eq 0 ]]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        echo "check: need root (or sudo) to run: $*" >&2
        return 1
    fi
}

install_tools() {
    # Debian's redis-server, for the scale-out tests (tests/cluster.rs start
    # their own servers on free loopback ports; nothing listens on 6379),
    # and tinyproxy, the HTTP CONNECT proxy of tests/proxy.rs (started by
    # the test with a config of its own on a free loopback port; the
    # package's system service is not used).
    if ! command -v redis-server >/dev/null 2>&1 || ! command -v tinyproxy >/dev/null 2>&1; then
        as_root apt-get update
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y redis-server tinyproxy
    fi
    # rustfmt and clippy come with a rustup toolchain; add them if missing.
    if ! cargo fmt --version >/dev/null 2>&1 || ! cargo clippy --version >/dev/null 2>&1; then
        rustup component add rustfmt clippy
    fi
    # cargo-fuzz, for the fuzz targets in fuzz/ (runs on stable with `-s none`).
    if [[ -z "${CHECK_SKIP_FUZZ:-}" ]] && ! command -v cargo-fuzz >/dev/null 2>&1; then
        cargo install cargo-fuzz --locked
    fi
    # Autobahn's wstest (Python 2.7, kept under target/): see autobahn/install.sh.
    if [[ -z "${CHECK_SKIP_AUTOBAHN:-}" ]]; then
        bash autobahn/install.sh
    fi
}

# --- 2. static checks ---------------------------------------------------------

proto_dependencies() {
    # proto/ may depend on bytes, sha1, base64, httparse (and getrandom for
    # one seed per client connection) and nothing else: build the library
    # with no features, which leaves out transport/ and the binary, and
    # compare its direct dependencies with that list.
    cargo build --quiet --lib --no-default-features
    local deps
    deps=$(cargo tree --no-default-features --edges normal --depth 1 --prefix none \
        | tail -n +2 | awk '{print $1}' | sort -u | tr '\n' ' ')
    if [[ "$deps" != "base64 bytes getrandom httparse sha1 " ]]; then
        echo "proto/ depends on more than it may: $deps" >&2
        return 1
    fi
    # And no source file under proto/ names a crate outside that list.
    # (Code lines only: comments may name what proto/ leaves to others.)
    if grep -rnE '\b(tokio|futures|tracing|mio)::|std::(net|fs|thread|time)\b|Instant::now|SystemTime' src/proto \
        | grep -vE '^[^:]+:[0-9]+:\s*//'; then
        echo "proto/ must not do I/O, read clocks or use the runtime" >&2
        return 1
    fi
    echo "proto/ depends on: $deps"
    # With permessage-deflate (RFC 7692), flate2 (on zlib-rs) joins them,
    # and nothing else.
    deps=$(cargo tree --no-default-features --features deflate --edges normal --depth 1 --prefix none \
        | tail -n +2 | awk '{print $1}' | sort -u | tr '\n' ' ')
    if [[ "$deps" != "base64 bytes flate2 getrandom httparse sha1 " ]]; then
        echo "proto/ with deflate depends on more than it may: $deps" >&2
        return 1
    fi
    echo "proto/ with the deflate feature depends on: $deps"
}

tls_provider() {
    # rustls with two crypto providers compiled in (and none installed)
    # panics at run time in `ClientConfig::builder()`. Every rustls-family
    # crate in Cargo.toml has its default features off and names ring, so
    # aws-lc-rs must be nowhere in the tree: any feature, any target,
    # dev-dependencies included. `cargo tree -i` fails when it finds
    # nothing, which is what we want.
    local found
    if found=$(cargo tree --all-features --target all -e features -i aws-lc-rs 2>&1); then
        echo "aws-lc-rs is in the dependency tree (two rustls crypto providers):" >&2
        echo "$found" >&2
        return 1
    fi
    local crates
    crates=$(cargo tree --all-features --target all -e all --prefix none | awk '{print $1}' | sort -u)
    if grep -xE 'aws-lc-(rs|sys|fips-sys)' <<<"$crates"; then
        echo "an aws-lc crate is in the dependency tree" >&2
        return 1
    fi
    if ! grep -qx ring <<<"$crates"; then
        echo "ring, the one TLS crypto provider, is missing from the tree" >&2
        return 1
    fi
    echo "TLS: one crypto provider, ring; no aws-lc-rs"
}

package_contents() {
    # The crate as users get it (Cargo.toml `include`): the library, the
    # binary, the page it embeds (web/), the examples, the docs, and none
    # of what only this repository's tests and tools need. `--allow-dirty`
    # so that the check also runs on a working tree with edits.
    local files
    files=$(cargo package --list --allow-dirty --quiet)
    local banned
    banned=$(grep -E '^(fuzz|loadtest|autobahn|benches|scripts|target|\.ci)/|node_modules|(^|/)reports?/|corpus|\.db$|^tests/' <<<"$files" \
        | grep -vx 'tests/walkthrough/session.rs' || true)
    if [[ -n "$banned" ]]; then
        echo "the package holds files no user needs (Cargo.toml include):" >&2
        echo "$banned" >&2
        return 1
    fi
    local f
    for f in Cargo.toml README.md LICENSE-MIT LICENSE-APACHE src/lib.rs src/main.rs \
        web/index.html docs/PROTOCOL.md examples/axum_echo.rs tests/walkthrough/session.rs; do
        if ! grep -qx "$f" <<<"$files"; then
            echo "the package lacks $f" >&2
            return 1
        fi
    done
    echo "the package holds $(wc -l <<<"$files") files, none of the repository's tooling"
    # What crates.io would check before an upload, without uploading: the
    # packaged crate alone builds (about a minute once `cargo test` has
    # built the dependencies, hence this step's place after it).
    cargo publish --dry-run --allow-dirty --quiet
    # That builds the library and the binary; the examples too must build
    # from the package alone (the walkthrough's session is its one file
    # from tests/). Same target directory, so the dependencies are reused.
    local version target
    version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n 1)
    target="${CARGO_TARGET_DIR:-$PWD/target}"
    CARGO_TARGET_DIR="$target" cargo build --quiet --examples --all-features \
        --manifest-path "$target/package/rfc6455-$version/Cargo.toml"
}

# --- 3. run -----------------------------------------------------------------

run_step "install tools" install_tools
run_step "cargo fmt --check" cargo fmt --all -- --check
run_step "cargo fmt --check (fuzz/)" cargo fmt --manifest-path fuzz/Cargo.toml -- --check
run_step "clippy (all targets, all features)" cargo clippy --all-targets --all-features -- -D warnings
run_step "clippy (proto alone)" cargo clippy --lib --tests --no-default-features -- -D warnings
run_step "clippy (proto with deflate)" cargo clippy --lib --tests --no-default-features --features deflate -- -D warnings
# The transport without the chat or the CLI, as loadtest/ours and library
# users who turn the defaults off build it (an import only the chat uses
# once slipped through the three runs above).
run_step "clippy (transport alone)" cargo clippy --lib --no-default-features --features transport -- -D warnings
run_step "proto's dependencies" proto_dependencies
run_step "TLS: ring is the only crypto provider" tls_provider
# --all-features takes in `hyper` and `axum` (off by default): their
# upgrade, the extractor and the examples that tests/frameworks.rs runs.
run_step "cargo test" cargo test --all-features
run_step "cargo test (proto alone)" cargo test --lib --no-default-features
run_step "cargo doc" env RUSTDOCFLAGS="-D warnings" cargo doc --no-deps --all-features
run_step "the package (cargo package --list, publish --dry-run)" package_contents
if [[ -z "${CHECK_SKIP_BROWSER:-}" ]]; then
    # Installs Debian's chromium and the npm packages when missing.
    run_step "chat in real Chromium (playwright-core)" bash scripts/browser-test.sh
fi
# The benchmarks compile; nothing is timed here (benches/, BENCHMARKS.md).
run_step "benches compile (cargo bench --no-run)" cargo bench --no-run
# The load-benchmark workspace (loadtest/) stays formatted, lint-clean and
# building; its unit tests check the generator's parsers and histogram.
# Nothing here generates load: that is loadtest/compare.sh, by hand.
loadtest_checks() {
    cargo fmt --manifest-path loadtest/Cargo.toml --all --check
    cargo clippy --manifest-path loadtest/Cargo.toml --all-targets -- -D warnings
    cargo test --manifest-path loadtest/Cargo.toml
}
run_step "loadtest/: fmt, clippy, unit tests" loadtest_checks
if [[ -z "${CHECK_SKIP_AUTOBAHN:-}" ]]; then
    run_step "Autobahn TestSuite, both roles (strict)" bash autobahn/run.sh all
fi
# Every target `cargo fuzz list` names (fuzz/Cargo.toml's [[bin]]s,
# recv_cancel's cancel safety among them), a short run each; the long,
# recorded runs are scripts/fuzz-campaign.sh (docs/FUZZING.md).
if [[ -z "${CHECK_SKIP_FUZZ:-}" ]]; then
    run_step "fuzz targets, ${CHECK_FUZZ_SECONDS:-20} s each" bash scripts/fuzz.sh "${CHECK_FUZZ_SECONDS:-20}"
fi
summary
echo
echo "All checks passed."
