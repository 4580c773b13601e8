#!/usr/bin/env bash
# The wheelhouse the role bitcraps_node copies to boards (they have no package index), in the
# layout it looks for: OUT/<ansible_architecture>/ = OUT/x86_64/ and OUT/aarch64/, each the node's
# wheel plus every dependency as a wheel for bookworm's CPython 3.11 (image/wheelhouse.sh makes
# them; the same wheel goes to both).
#   ansible/build-wheelhouse.sh [OUT]        (default: build/wheelhouse; needs PyPI)
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$repo/build/wheelhouse}
rm -rf "${out:?}/x86_64" "${out:?}/aarch64"
bash "$repo/image/wheelhouse.sh" --arch amd64 --out "$out/x86_64" >/dev/null
bash "$repo/image/wheelhouse.sh" --arch arm64 --out "$out/aarch64" "$(ls "$out"/x86_64/bitcraps_node-*.whl)" >/dev/null
ls "$out"/*/ >&2
