#!/usr/bin/env bash
# A wheelhouse for installing bitcraps-node offline on a Debian bookworm board (CPython 3.11):
#
#   image/wheelhouse.sh --arch arm64|amd64 --out DIR [WHEEL]
#
# DIR gets the node's wheel (built from this checkout, or WHEEL) and a wheel of every dependency
# for the target: `pip install --no-index --find-links DIR bitcraps-node` then needs no package
# index (boards in the field may have none). Versions are resolved once on this machine; for
# another architecture the same versions' binary wheels are fetched for its platform, so both
# architectures get the same dependency versions. Pure-Python sdists become py3-none-any wheels.
set -euo pipefail

arch=
out=
wheel=
while [ $# -gt 0 ]; do
    case "$1" in
    --arch) arch=${2:?}; shift 2 ;;
    --out) out=${2:?}; shift 2 ;;
    -*) echo "wheelhouse.sh: unknown option $1" >&2; exit 2 ;;
    *) wheel=$1; shift ;;
    esac
done
case "$arch" in
arm64) machine=aarch64 ;;
amd64) machine=x86_64 ;;
*) echo "usage: wheelhouse.sh --arch arm64|amd64 --out DIR [WHEEL]" >&2; exit 2 ;;
esac
[ -n "$out" ] || { echo "wheelhouse.sh: --out DIR is required" >&2; exit 2; }

repo=$(cd "$(dirname "$0")/.." && pwd)
py=${PYTHON:-$repo/.venv/bin/python}
[ -x "$py" ] || py=python3
pyver=$("$py" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
# Debian bookworm's python3: the wheels must fit it whatever runs this script.
if [ "$pyver" != 3.11 ]; then
    echo "wheelhouse.sh: needs CPython 3.11 (bookworm's) to resolve for the board, got $pyver" >&2
    exit 2
fi
mkdir -p "$out"
out=$(cd "$out" && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

if [ -z "$wheel" ]; then
    # Built from a copy of the tree so setuptools' build/ stays out of the checkout.
    (cd "$repo" && tar cf - pyproject.toml README.md node bluez netlink) | tar xf - -C "$tmp"
    "$py" -m pip wheel -q --no-deps -w "$out" "$tmp"
    wheel=$(ls "$out"/bitcraps_node-*.whl)
else
    cp "$wheel" "$out/"
fi

# Resolve on this machine: every dependency as a wheel for this machine's platform.
"$py" -m pip wheel -q --wheel-dir "$tmp/host" "$wheel"
host_machine=$(uname -m)
for w in "$tmp"/host/*.whl; do
    name=$(basename "$w")
    case "$name" in
    bitcraps_node-*) continue ;;
    *-none-any.whl) cp "$w" "$out/" ;;
    *)
        if [ "$machine" = "$host_machine" ]; then
            cp "$w" "$out/"
        else
            # name-version-...: the same version, as a binary wheel for the board (glibc 2.36).
            dist=${name%%-*}
            version=$(echo "$name" | cut -d- -f2)
            "$py" -m pip download -q --no-deps --only-binary=:all: --dest "$out" \
                --python-version 3.11 --implementation cp \
                --platform "manylinux_2_36_$machine" --platform "manylinux_2_34_$machine" \
                --platform "manylinux_2_28_$machine" --platform "manylinux_2_17_$machine" \
                --platform "manylinux2014_$machine" "$dist==$version"
        fi
        ;;
    esac
done
ls "$out"
