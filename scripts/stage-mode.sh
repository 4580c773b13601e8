# Sourced by the CI stage scripts that own a board build (ci-image.sh, ci-ops.sh): their
# arguments, `[--packages | --built LOG]`, as $mode (all, packages, built) and $built_log.
# --packages: install the stage's system packages and exit (.ci/run installs every stage's first,
# one apt at a time). --built LOG: .ci/run's background build already built it (LOG is its log).
mode=all
built_log=
case "${1:-}" in
--packages) mode=packages ;;
--built) mode=built; built_log=${2:?--built needs the build log} ;;
"") ;;
*) echo "$(basename "$0"): unknown argument $1 (usage: [--packages | --built LOG])" >&2; exit 2 ;;
esac
