#!/usr/bin/env bash
# Install the Autobahn TestSuite (`wstest`, PyPI package `autobahntestsuite`)
# into a private prefix, without docker and without installing anything
# system-wide.
#
# wstest only runs on Python 2.7, which Debian 12 no longer ships. We take the
# Python 2.7 packages from Debian 11 (bullseye), fetched from the same Debian
# archive this machine's apt already uses, and unpack them with `dpkg -x` into
#
#     target/autobahn-py27/            (at the repository root)
#
# Then pip (last py2-capable versions) is bootstrapped into that prefix and
# autobahntestsuite is installed with it. The last step writes
#
#     target/autobahn-py27/bin/wstest-run   (wrapper: sets env, runs wstest)
#     target/autobahn-py27/.installed       (stamp: the install is complete)
#
# A second run sees the stamp and does nothing. `install.sh --force` wipes the
# prefix and installs again. `install.sh --print-wstest` installs if needed
# and prints only the wrapper's path on stdout (for other scripts).
#
# Requirements: Debian 12 on x86_64 (amd64), apt-get + dpkg, python3 with pip
# (only used to download the py2 pip/setuptools/wheel wheels), gcc (wsaccel
# compiles a C extension), network access to the Debian archive and PyPI.
# Override the Debian archive with AUTOBAHN_DEBIAN_MIRROR=<uri> if the apt
# sources of this machine can't be parsed.
set -euo pipefail

# --- configuration ----------------------------------------------------------

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$SCRIPT_DIR/.." && pwd)"
PREFIX="$REPO_ROOT/target/autobahn-py27"
STAMP="$PREFIX/.installed"
WRAPPER="$PREFIX/bin/wstest-run"
ROOTFS="$PREFIX/root"            # the .deb files are unpacked here
TRIPLET="x86_64-linux-gnu"

WSTEST_VERSION="25.10.1"
# Bump when this script changes what it installs: an install made by an older
# revision (different first line in the stamp) is then redone.
STAMP_ID="autobahn-py27 rev 3: AutobahnTestSuite $WSTEST_VERSION"

# Debian 11 packages that make up a working Python 2.7 (+ headers, because
# wsaccel builds a C extension). libssl1.1 and libffi7 are not in Debian 12.
DEBS=(python2.7 python2.7-minimal libpython2.7-stdlib libpython2.7-minimal
      libssl1.1 libffi7 python2.7-dev libpython2.7-dev libpython2.7)

# The last releases of pip / setuptools / wheel that still support Python 2.7.
BOOTSTRAP_WHEELS=(pip==20.3.4 setuptools==44.1.1 wheel==0.37.1)

# autobahntestsuite pins its direct dependencies itself. These constraints fix
# the transitive ones to the versions known to work on Python 2.7 (this set
# is what pip 20.3.4 resolved when this script was written), so a later
# release on PyPI that forgets to declare `python_requires` can't break us.
CONSTRAINTS='
Automat==22.10.0
PyHamcrest==1.10.1
attrs==21.4.0
cffi==1.15.1
constantly==15.1.0
enum34==1.1.10
hyperlink==21.0.0
idna==2.10
ipaddress==1.0.23
linecache2==1.0.0
pyasn1==0.5.1
pyasn1-modules==0.3.0
pycparser==2.21
traceback2==1.4.0
typing==3.10.0.0
ujson==2.0.3
wsaccel==0.6.6
'

log() { echo "[autobahn/install] $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# --- arguments ----------------------------------------------------------------

FORCE=0
PRINT_WSTEST=0
for arg in "$@"; do
    case "$arg" in
        --force) FORCE=1 ;;
        --print-wstest) PRINT_WSTEST=1 ;;
        -h|--help) sed -n '2,26p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown argument: $arg (use --force, --print-wstest or --help)" ;;
    esac
done

# --- already installed? -------------------------------------------------------

if [[ $FORCE -eq 0 && -x "$WRAPPER" && -f "$STAMP" \
      && "$(head -n 1 "$STAMP")" == "$STAMP_ID" ]]; then
    log "wstest already installed ($STAMP_ID), nothing to do: $WRAPPER"
    [[ $PRINT_WSTEST -eq 1 ]] && echo "$WRAPPER"
    exit 0
fi

START=$SECONDS
log "installing wstest $WSTEST_VERSION (Python 2.7 from Debian 11) into $PREFIX"

[[ "$(uname -m)" == "x86_64" ]] || die "only x86_64 is supported (got $(uname -m))"
for tool in apt-get dpkg python3 gcc; do
    command -v "$tool" >/dev/null || die "'$tool' is required but not found"
done

# A half-finished earlier attempt (no stamp) is thrown away entirely.
rm -rf "$PREFIX"
mkdir -p "$PREFIX"/{apt/lists/partial,apt/cache/archives/partial,debs,wheels,bin} "$ROOTFS"

# --- 1. find the Debian archive this machine uses -----------------------------

# Print "URI<TAB>SIGNED_BY" for each enabled `deb` source of suite "bookworm",
# from deb822 *.sources files and one-line *.list files.
bookworm_sources() {
    local f
    for f in /etc/apt/sources.list.d/*.sources; do
        [[ -f "$f" ]] || continue
        # deb822: stanzas separated by blank lines; "Key: value" fields.
        awk '
            function flush() {
                if (types ~ /(^|[ \t])deb([ \t]|$)/ && suites ~ /(^|[ \t])bookworm([ \t]|$)/ \
                    && tolower(enabled) != "no" && uris != "") {
                    split(uris, u, /[ \t]+/); print u[1] "\t" signed
                }
                types = ""; uris = ""; suites = ""; enabled = ""; signed = ""
            }
            /^[ \t]*#/ { next }
            /^[ \t]*$/ { flush(); next }
            {
                key = tolower($0); sub(/:.*/, "", key)
                val = $0; sub(/^[^:]*:[ \t]*/, "", val); sub(/[ \t]+$/, "", val)
                if (key == "types") types = val
                else if (key == "uris") uris = val
                else if (key == "suites") suites = val
                else if (key == "enabled") enabled = val
                else if (key == "signed-by") signed = val
            }
            END { flush() }
        ' "$f"
    done
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [[ -f "$f" ]] || continue
        # one-line format: deb [opts] URI SUITE COMPONENT...
        awk '
            $1 != "deb" { next }
            {
                i = 2; signed = ""
                if ($2 ~ /^\[/) {
                    while (i <= NF) {
                        if ($i ~ /^signed-by=/) { signed = $i; sub(/^signed-by=/, "", signed); sub(/\]$/, "", signed) }
                        if ($i ~ /\]$/) { i++; break }
                        i++
                    }
                }
                if ($(i + 1) == "bookworm") print $i "\t" signed
            }
        ' "$f"
    done
}

MIRROR="${AUTOBAHN_DEBIAN_MIRROR:-}"
SIGNED_BY=""
if [[ -z "$MIRROR" ]]; then
    while IFS=$'\t' read -r uri signed; do
        case "$uri" in
            http://*|https://*|file:/*) MIRROR="$uri"; SIGNED_BY="$signed"; break ;;
        esac
    done < <(bookworm_sources)
fi
[[ -n "$MIRROR" ]] || die "no Debian archive for 'bookworm' found in /etc/apt/sources*; set AUTOBAHN_DEBIAN_MIRROR"
MIRROR="${MIRROR%/}"
# The Debian archive keyring of Debian 12 also holds the Debian 11 keys.
if [[ -f /usr/share/keyrings/debian-archive-keyring.gpg ]]; then
    SIGNED_BY=/usr/share/keyrings/debian-archive-keyring.gpg
fi
log "Debian archive (from this machine's apt sources): $MIRROR"

# --- 2. download the bullseye Python 2.7 packages with a private apt state ----

SOURCES="$PREFIX/apt/sources.list"
if [[ -n "$SIGNED_BY" && "$SIGNED_BY" == /* ]]; then
    echo "deb [signed-by=$SIGNED_BY] $MIRROR bullseye main" > "$SOURCES"
else
    echo "deb $MIRROR bullseye main" > "$SOURCES"
fi

# Only our own sources list, index files and cache: the machine's apt state
# is neither read for sources nor modified.
APT_OPTS=(
    -o "Dir::Etc::sourcelist=$SOURCES"
    -o "Dir::Etc::sourceparts=-"
    -o "Dir::State::Lists=$PREFIX/apt/lists"
    -o "Dir::Cache=$PREFIX/apt/cache"
    -o "Acquire::Languages=none"
    -o "APT::Sandbox::User=root"
)
log "apt-get update (private state, bullseye only)"
apt-get "${APT_OPTS[@]}" -q update >"$PREFIX/apt/update.log" 2>&1 \
    || { cat "$PREFIX/apt/update.log" >&2; die "apt-get update for bullseye failed"; }

log "apt-get download ${DEBS[*]}"
( cd "$PREFIX/debs" && apt-get "${APT_OPTS[@]}" -q download "${DEBS[@]}" ) >"$PREFIX/apt/download.log" 2>&1 \
    || { cat "$PREFIX/apt/download.log" >&2; die "apt-get download failed"; }

# --- 3. unpack them into the prefix (nothing is installed system-wide) --------

for deb in "$PREFIX"/debs/*.deb; do
    dpkg -x "$deb" "$ROOTFS"
done
PY="$ROOTFS/usr/bin/python2.7"
[[ -x "$PY" ]] || die "python2.7 missing after unpacking"

# Environment for the private Python: its own libssl1.1/libffi7, its own home,
# and nothing from the user's site-packages or PYTHONPATH.
py2() {
    env -u PYTHONPATH \
        LD_LIBRARY_PATH="$ROOTFS/usr/lib/$TRIPLET" \
        PYTHONHOME="$ROOTFS/usr" \
        PYTHONNOUSERSITE=1 \
        PIP_CACHE_DIR="$PREFIX/pip-cache" \
        PIP_DISABLE_PIP_VERSION_CHECK=1 \
        PIP_NO_PYTHON_VERSION_WARNING=1 \
        "$PY" "$@"
}
py2 -c 'import ssl, ctypes, zlib, hashlib' || die "the unpacked python2.7 does not work"
log "$(py2 -c 'import sys, ssl; print("python %s, %s" % (sys.version.split()[0], ssl.OPENSSL_VERSION))')"

# --- 4. bootstrap pip / setuptools / wheel for Python 2.7 ---------------------

log "downloading ${BOOTSTRAP_WHEELS[*]} with the system python3"
python3 -m pip download -q --no-deps --only-binary=:all: --dest "$PREFIX/wheels" \
    "${BOOTSTRAP_WHEELS[@]}" || die "pip download of the bootstrap wheels failed"
PIP_WHEEL="$(ls "$PREFIX"/wheels/pip-*.whl)"
# A wheel is a zip file, and Python can import a package from a zip path: run
# pip straight from its wheel to install pip itself.
py2 "$PIP_WHEEL/pip" install -q --no-warn-script-location --no-index \
    --find-links "$PREFIX/wheels" pip setuptools wheel
log "$(py2 -m pip --version)"

# --- 5. install autobahntestsuite --------------------------------------------

printf '%s' "$CONSTRAINTS" > "$PREFIX/constraints.txt"
log "pip install autobahntestsuite==$WSTEST_VERSION (log: $PREFIX/pip-install.log)"
# wsaccel compiles C: point it at the unpacked Python headers (Python.h and the
# multiarch pyconfig.h).
INC="$ROOTFS/usr/include"
if ! CC=gcc \
     CFLAGS="-I$INC/python2.7 -I$INC/$TRIPLET/python2.7 -I$INC" \
     py2 -m pip install --no-warn-script-location \
        --constraint "$PREFIX/constraints.txt" \
        "autobahntestsuite==$WSTEST_VERSION" >"$PREFIX/pip-install.log" 2>&1; then
    tail -n 40 "$PREFIX/pip-install.log" >&2
    die "pip install autobahntestsuite failed"
fi

# --- 6. the wrapper ---------------------------------------------------------

# A small launcher: makes wstest's listening sockets bind to 127.0.0.1 instead
# of all interfaces (wstest itself always binds to all of them), then runs
# wstest. WSTEST_LISTEN_INTERFACE overrides the address; set it to the empty
# string to get wstest's own behaviour back.
cat > "$PREFIX/bin/wstest_launcher.py" <<'PYEOF'
# Generated by autobahn/install.sh: runs wstest, listening on loopback only.
import os
import sys
import warnings

# cryptography warns on every start that Python 2 is deprecated; we know.
warnings.filterwarnings("ignore", message="Python 2 is no longer supported")

LISTEN_INTERFACE = os.environ.get("WSTEST_LISTEN_INTERFACE", "127.0.0.1")
if LISTEN_INTERFACE:
    # Patch the reactor base class. Importing posixbase does not install a
    # reactor, so wstest still chooses its reactor itself later on.
    from twisted.internet import posixbase

    base = posixbase.PosixReactorBase
    plain_listen_tcp = base.listenTCP
    plain_listen_ssl = base.listenSSL

    def listen_tcp(self, port, factory, backlog=50, interface=""):
        return plain_listen_tcp(self, port, factory, backlog,
                                interface or LISTEN_INTERFACE)

    def listen_ssl(self, port, factory, context, backlog=50, interface=""):
        return plain_listen_ssl(self, port, factory, context, backlog,
                                interface or LISTEN_INTERFACE)

    base.listenTCP = listen_tcp
    base.listenSSL = listen_ssl

sys.argv[0] = "wstest"
from autobahntestsuite.wstest import run

sys.exit(run())
PYEOF

# The wrapper finds the prefix relative to itself, so it needs no edits.
cat > "$WRAPPER" <<'EOF'
#!/usr/bin/env bash
# Runs wstest (Autobahn TestSuite) with the private Python 2.7.
# Generated by autobahn/install.sh; arguments are passed on to wstest.
set -euo pipefail
PREFIX="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
ROOTFS="$PREFIX/root"
unset PYTHONPATH
export LD_LIBRARY_PATH="$ROOTFS/usr/lib/x86_64-linux-gnu"
export PYTHONHOME="$ROOTFS/usr"
export PYTHONNOUSERSITE=1
export PYTHONUNBUFFERED=1   # live logs when output goes to a file
exec "$ROOTFS/usr/bin/python2.7" "$PREFIX/bin/wstest_launcher.py" "$@"
EOF
chmod +x "$WRAPPER"

VERSION_OUT="$("$WRAPPER" -a 2>&1)" || die "wstest -a failed: $VERSION_OUT"
echo "$VERSION_OUT" | grep -q "AutobahnTestSuite $WSTEST_VERSION" \
    || die "unexpected 'wstest -a' output: $VERSION_OUT"

# Drop what is only needed during installation.
rm -rf "$PREFIX/apt" "$PREFIX/pip-cache"

# --- 7. stamp (written last: its presence means the install is complete) ----

printf '%s\n%s\n' "$STAMP_ID" "python2.7 from Debian 11; installed $(date -u +%Y-%m-%dT%H:%M:%SZ)" > "$STAMP"
log "done in $((SECONDS - START))s: $(echo "$VERSION_OUT" | tr '\n' ' ')-> $WRAPPER"
[[ $PRINT_WSTEST -eq 1 ]] && echo "$WRAPPER"
exit 0
