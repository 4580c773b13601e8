#!/usr/bin/env bash
# Builds the wheelhouse the role bitcraps_node copies to boards (they have no package index):
#   OUT/x86_64/ and OUT/aarch64/, each with the node's wheel and every dependency as a wheel for
#   CPython 3.11 (Debian bookworm's python3) on glibc (manylinux) for that architecture.
# Run it on the controller, which needs PyPI:  ansible/build-wheelhouse.sh [OUT] [PROJECT]
# (defaults: build/wheelhouse and the repository). PYTHON picks the interpreter whose pip runs
# (default: the project's .venv, else python3).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
project=$(cd "${2:-$here/..}" && pwd)
out=${1:-$project/build/wheelhouse}
python=${PYTHON:-$project/.venv/bin/python}
[ -x "$python" ] || python=python3
pip=("$python" -m pip --disable-pip-version-check)

mkdir -p "$out"
out=$(cd "$out" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# 1. The node's wheel (pure Python), and wheels for this machine of every dependency: a
#    dependency published only as an sdist (sdnotify) becomes a pure wheel here.
"${pip[@]}" wheel -q -w "$work/host" "$project"
node_wheel=$(ls "$work"/host/bitcraps_node-*.whl)

# 2. Per target architecture, binary wheels only, for cp311 on bookworm's glibc (2.36). pip takes
#    --platform literally, so every manylinux tag up to 2.36 is listed; the pure wheels from step 1
#    fill in what has no binary release.
for arch in x86_64 aarch64; do
    platforms=(--platform "manylinux2014_$arch")
    for minor in $(seq 17 36); do platforms+=(--platform "manylinux_2_${minor}_$arch"); done
    rm -rf "${out:?}/$arch"
    mkdir -p "$out/$arch"
    "${pip[@]}" download -q --only-binary=:all: "${platforms[@]}" \
        --python-version 3.11 --implementation cp --abi cp311 --abi abi3 --abi none \
        --find-links "$work/host" -d "$out/$arch" "$node_wheel"
done
ls "$out"/*/ >&2
