#!/bin/sh
# install.sh - installs a released linkup binary (docs/install.md).
#
# Reads the release manifest of docs/releases.md (the same one `linkup update`
# reads), picks the highest release of the channel that has an asset for this
# platform, verifies its SHA-256, moves it into place atomically and, on
# Linux, gives it cap_net_bind_service so `linkup start` can bind 80/443.
#
#   sh install.sh [--prefix DIR | --bin-dir DIR] [--channel stable|beta] [--version X]
#   (self-contained: it also works piped into `sh -s -- [OPTIONS]`)
#
# An existing binary is only replaced by a verified one.
set -eu

DEFAULT_RELEASE_URL="https://github.com/linkup-in-c/linkup/releases/latest/download/manifest.json"

release_url=${LINKUP_RELEASE_URL:-$DEFAULT_RELEASE_URL}
install_dir=${LINKUP_INSTALL_DIR:-/usr/local/bin}
channel=stable
want_version=
work=

usage() {
    cat <<EOF
Install a released linkup binary

Usage: install.sh [OPTIONS]

Options:
      --prefix <DIR>      Install into DIR/bin (like make install PREFIX=DIR)
                          [default: /usr/local]
      --bin-dir <DIR>     Directory that receives the binary itself
                          [env: LINKUP_INSTALL_DIR] [default: /usr/local/bin]
      --channel <CHANNEL> Release channel [possible values: stable, beta] [default: stable]
      --version <VERSION> Install this release instead of the channel's newest
  -h, --help              Print help

Environment:
  LINKUP_RELEASE_URL  Release manifest URL [default: $DEFAULT_RELEASE_URL]
  LINKUP_NO_SETCAP=1  Do not give the binary cap_net_bind_service (Linux)
EOF
}

say() {
    printf '%s\n' "$*"
}

warn() {
    printf 'install.sh: warning: %s\n' "$*" >&2
}

die() {
    printf 'install.sh: error: %s\n' "$*" >&2
    exit 1
}

cleanup() {
    if [ -n "$work" ]; then
        rm -rf "$work"
    fi
}

need_arg() {
    if [ $# -lt 2 ] || [ -z "$2" ]; then
        die "$1 needs a value (see --help)"
    fi
}

parse_args() {
    while [ $# -gt 0 ]; do
        case "$1" in
        -h | --help)
            usage
            exit 0
            ;;
        --prefix)
            need_arg "$@"
            install_dir=${2%/}/bin
            shift
            ;;
        --prefix=*)
            install_dir=${1#--prefix=}
            install_dir=${install_dir%/}/bin
            ;;
        --bin-dir)
            need_arg "$@"
            install_dir=$2
            shift
            ;;
        --bin-dir=*) install_dir=${1#--bin-dir=} ;;
        --channel)
            need_arg "$@"
            channel=$2
            shift
            ;;
        --channel=*) channel=${1#--channel=} ;;
        --version)
            need_arg "$@"
            want_version=$2
            shift
            ;;
        --version=*) want_version=${1#--version=} ;;
        *) die "unexpected argument '$1' (see --help)" ;;
        esac
        shift
    done
    case "$channel" in
    stable | beta) ;;
    *) die "invalid channel '$channel' (possible values: stable, beta)" ;;
    esac
}

# Sets os_part and arch to the parts of a manifest asset key (docs/releases.md).
detect_platform() {
    sysname=$(uname -s)
    machine=$(uname -m)
    case "$sysname" in
    Linux) os_part=unknown-linux ;;
    Darwin) os_part=apple-darwin ;;
    *) die "unsupported operating system '$sysname' (Linux and macOS are supported)" ;;
    esac
    case "$machine" in
    x86_64 | amd64) arch=x86_64 ;;
    aarch64 | arm64) arch=aarch64 ;;
    *) die "unsupported architecture '$machine' (x86_64 and aarch64 are supported)" ;;
    esac
}

# fetch URL FILE: downloads URL into FILE, failing on HTTP errors.
fetch() {
    if command -v curl >/dev/null 2>&1; then
        curl -fsSL --retry 2 --connect-timeout 10 -o "$2" "$1"
    elif command -v wget >/dev/null 2>&1; then
        wget -q -T 30 -O "$2" "$1"
    else
        die "curl or wget is needed to download linkup"
    fi
}

# The manifest selection in Python: prints "version url sha256" of the
# release to install, or nothing. Versions and ordering follow SPEC §3.11:
# pre-releases compare by their pre-release string only and sort below
# stable releases; stable ones compare numerically.
PY_SELECT='
import json, sys, urllib.parse
path, base, os_part, arch, channel, want = sys.argv[1:7]

def parse(v):
    if not isinstance(v, str):
        return None
    head, sep, pre = v.partition("-")
    nums = head.split(".")
    if len(nums) != 3 or not all(n.isdigit() and n.isascii() and int(n) < 65536 for n in nums):
        return None
    return (0, pre) if sep else (1,) + tuple(int(n) for n in nums)

def ident(v):
    head, sep, pre = v.partition("-")
    return (tuple(int(n) for n in head.split(".")), sep, pre)

try:
    with open(path, encoding="utf-8") as f:
        doc = json.load(f)
except ValueError as e:  # not JSON, or not UTF-8
    sys.exit("the manifest is not JSON: %s" % e)
rels = doc.get("releases") if isinstance(doc, dict) else None
if not isinstance(rels, list):
    sys.exit("the manifest has no \"releases\" array")
best = None
for r in rels:
    if not isinstance(r, dict):
        continue
    v = r.get("version")
    key = parse(v)
    if key is None:
        continue
    ch = r.get("channel") or ("beta" if key[0] == 0 else "stable")
    if want:
        if parse(want) is None or ident(v) != ident(want):
            continue
    elif ch != channel:
        continue
    assets = r.get("assets")
    if not isinstance(assets, dict):
        continue
    asset = next((a for k, a in assets.items() if os_part in k and arch in k), None)
    if not isinstance(asset, dict):
        continue
    url, sha = asset.get("url"), asset.get("sha256")
    if not isinstance(url, str) or not isinstance(sha, str):
        continue
    if best is None or key > best[0]:
        best = (key, v, urllib.parse.urljoin(base, url), sha)
if best:
    print(best[1], best[2], best[3])
'

# The same selection in jq (when python3 is missing). Relative URLs are
# resolved by resolve_url afterwards.
# shellcheck disable=SC2016 # jq variables, not shell ones
JQ_SELECT='
def parse: if type != "string" then null else
    (index("-")) as $i
    | (if $i then .[:$i] else . end) as $head
    | ($head | split(".")) as $n
    | if ($n | length) == 3 and all($n[]; test("^[0-9]{1,5}$") and tonumber < 65536)
      then (if $i then [0, .[$i + 1:]] else [1] + ($n | map(tonumber)) end)
      else null end end;
def ident: (index("-")) as $i
    | [ ((if $i then .[:$i] else . end) | split(".") | map(tonumber)), ($i != null),
        (if $i then .[$i + 1:] else "" end) ];
[ .releases[]? | objects
  | . as $r | ($r.version | parse) as $key | select($key != null)
  | select(if $want != "" then (($want | parse) != null and ($want | ident) == ($r.version | ident)) else
      (($r.channel // (if $key[0] == 0 then "beta" else "stable" end)) == $channel) end)
  | ([ ($r.assets // {}) | objects | to_entries[]
       | select((.key | contains($os)) and (.key | contains($arch))) | .value ] | first) as $a
  | select(($a | type) == "object" and ($a.url | type) == "string"
      and ($a.sha256 | type) == "string")
  | { key: $key, version: $r.version, url: $a.url, sha: $a.sha256 } ]
| sort_by(.key) | last | select(. != null) | "\(.version) \(.url) \(.sha)"
'

# resolve_url BASE REF: REF resolved against BASE for the forms a manifest
# uses (absolute, //host/..., /path, relative path).
resolve_url() {
    case "$2" in
    *://*) printf '%s\n' "$2" ;;
    //*) printf '%s:%s\n' "${1%%://*}" "$2" ;;
    /*)
        rest=${1#*://}
        printf '%s://%s%s\n' "${1%%://*}" "${rest%%/*}" "$2"
        ;;
    *)
        base=${1%%[?#]*}
        printf '%s%s\n' "${base%/*}/" "$2"
        ;;
    esac
}

# Sets version, asset_url and asset_sha from the manifest file $1.
select_release() {
    if command -v python3 >/dev/null 2>&1; then
        picked=$(python3 -c "$PY_SELECT" "$1" "$release_url" "$os_part" "$arch" "$channel" \
            "$want_version") || die "cannot read the release manifest at $release_url"
    elif command -v jq >/dev/null 2>&1; then
        picked=$(jq -r --arg os "$os_part" --arg arch "$arch" --arg channel "$channel" \
            --arg want "$want_version" "$JQ_SELECT" "$1") ||
            die "cannot read the release manifest at $release_url"
    else
        die "python3 or jq is needed to read the release manifest"
    fi
    if [ -z "$picked" ]; then
        if [ -n "$want_version" ]; then
            die "no release $want_version for $arch-$os_part in $release_url"
        fi
        die "no $channel release for $arch-$os_part in $release_url"
    fi
    set -f
    # shellcheck disable=SC2086 # the three fields are split on purpose
    set -- $picked
    set +f
    version=$1
    asset_sha=$3
    asset_url=$(resolve_url "$release_url" "$2")
}

sha256_of() {
    if command -v sha256sum >/dev/null 2>&1; then
        sha256sum "$1" | cut -d ' ' -f 1
    elif command -v shasum >/dev/null 2>&1; then
        shasum -a 256 "$1" | cut -d ' ' -f 1
    else
        die "sha256sum or shasum is needed to verify the download"
    fi
}

# Leaves the executable to install at $work/linkup.
unpack() {
    magic=$(od -An -tx1 -N2 "$1" | tr -d ' \n')
    if [ "$magic" != "1f8b" ]; then
        mv "$1" "$work/linkup"
        return
    fi
    entry=$(tar -tzf "$1" | grep linkup | grep -v '/$' | head -n 1) || entry=
    [ -n "$entry" ] || die "no linkup executable in the downloaded archive"
    mkdir "$work/x"
    tar -xzf "$1" -C "$work/x" "$entry" || die "cannot extract $entry from the downloaded archive"
    mv "$work/x/$entry" "$work/linkup"
}

download_and_verify() {
    say "Downloading linkup $version from $asset_url"
    fetch "$asset_url" "$work/asset" || die "cannot download $asset_url"
    got=$(sha256_of "$work/asset") && [ -n "$got" ] || exit 1
    want=$(printf '%s' "$asset_sha" | tr 'A-F' 'a-f')
    if [ "$got" != "$want" ]; then
        die "SHA-256 mismatch for $asset_url: expected $want, got $got (nothing installed)"
    fi
    unpack "$work/asset"
}

# Moves $work/linkup to $target through a temporary file in the same
# directory, so the rename is atomic and a failure leaves the old binary.
place() {
    sudo=
    if [ -d "$install_dir" ]; then
        [ -w "$install_dir" ] || sudo=sudo
    elif ! mkdir -p "$install_dir" 2>/dev/null; then
        sudo=sudo
    fi
    if [ -n "$sudo" ]; then
        command -v sudo >/dev/null 2>&1 || die "$install_dir is not writable and sudo is missing"
        say "Installing to $install_dir needs sudo"
        sudo mkdir -p "$install_dir"
    fi
    staged="$install_dir/.linkup.new.$$"
    if ! $sudo cp "$work/linkup" "$staged" || ! $sudo chmod 755 "$staged" ||
        ! $sudo mv -f "$staged" "$target"; then
        $sudo rm -f "$staged"
        die "cannot install to $target"
    fi
}

# Linux: lets the binary bind ports below 1024 without root (linkup start
# binds 80 and 443).
add_capability() {
    [ "$sysname" = Linux ] || return 0
    [ "${LINKUP_NO_SETCAP:-}" != 1 ] || return 0
    hint="sudo setcap cap_net_bind_service=+ep \"$target\""
    # Debian keeps setcap in /usr/sbin, often outside a user's PATH.
    setcap_cmd=$(command -v setcap 2>/dev/null) || setcap_cmd=
    for c in /usr/sbin/setcap /sbin/setcap; do
        if [ -z "$setcap_cmd" ] && [ -x "$c" ]; then
            setcap_cmd=$c
        fi
    done
    if [ -z "$setcap_cmd" ]; then
        warn "setcap not found (Debian: libcap2-bin); to bind ports 80/443 without root run: $hint"
        return 0
    fi
    if [ "$(id -u)" -eq 0 ]; then
        "$setcap_cmd" cap_net_bind_service=+ep "$target" && return 0
    elif command -v sudo >/dev/null 2>&1; then
        say "Adding the capability to bind ports 80/443 needs sudo"
        sudo "$setcap_cmd" cap_net_bind_service=+ep "$target" && return 0
    fi
    warn "could not add the capability to bind ports 80/443; run: $hint"
}

main() {
    parse_args "$@"
    detect_platform
    work=$(mktemp -d "${TMPDIR:-/tmp}/linkup-install.XXXXXX") || die "cannot create a temporary directory"
    trap cleanup EXIT
    trap 'exit 130' INT TERM
    fetch "$release_url" "$work/manifest.json" || die "cannot download the release manifest $release_url"
    select_release "$work/manifest.json"
    download_and_verify
    target="${install_dir%/}/linkup"
    place
    add_capability
    say "Installed linkup $version to $target"
}

main "$@"
