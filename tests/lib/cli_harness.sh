# Shared by the shell tests of the ember command-line tool (tests/cli_*.sh), sourced
# with the script's arguments in place: checks that $1 is the ember program (made an
# absolute path in $EMBER), sets $HERE to the tests' directory, makes a scratch
# directory $TMP removed on exit, and defines the checks. Each check counts itself in
# $checks; a failed one counts in $failures and prints the last run's output. A script
# ends with `finish NAME`, whose status is the test's.
# (Not named tests/cli_*.sh: those are the tests themselves.)
EMBER=$1
if [ -z "$EMBER" ] || [ ! -x "$EMBER" ]; then
    echo "usage: sh $0 path/to/ember" >&2
    exit 2
fi
EMBER=$(cd "$(dirname "$EMBER")" && pwd)/$(basename "$EMBER")
HERE=$(cd "$(dirname "$0")" && pwd)
TMP=$(mktemp -d) || exit 2
trap 'rm -rf "$TMP"' EXIT
trap 'exit 1' INT TERM

checks=0
failures=0

# SHOW_LINES: at most this many lines of each stream after a failure (all when unset).
show() {
    sed 's/^/    stdout: /' "$TMP/out" | head -n "${SHOW_LINES:-1000000}"
    sed 's/^/    stderr: /' "$TMP/err" | head -n "${SHOW_LINES:-1000000}"
}
fail() {
    failures=$((failures + 1))
    echo "FAIL: $*"
    show
}
# run ARGS...: runs ember, keeping stdout, stderr and the exit status.
run() {
    last="ember $*"
    "$EMBER" "$@" >"$TMP/out" 2>"$TMP/err"
    status=$?
}
expect_status() {
    checks=$((checks + 1))
    [ "$status" -eq "$1" ] || fail "$last: exit status $status, expected $1"
}
expect_text() { # out|err|FILE FIXED-STRING
    checks=$((checks + 1))
    case $1 in out | err) text_file=$TMP/$1 text_where=std$1 ;; *) text_file=$1 text_where=$1 ;; esac
    grep -q -F -e "$2" "$text_file" || fail "$last: '$2' missing from $text_where"
}
expect_no_text() { # out|err FIXED-STRING
    checks=$((checks + 1))
    if grep -q -F -e "$2" "$TMP/$1"; then fail "$last: unexpected '$2' in std$1"; fi
}
expect_lines() { # out|err N
    checks=$((checks + 1))
    n=$(wc -l <"$TMP/$1")
    [ "$n" -eq "$2" ] || fail "$last: $n lines on std$1, expected $2"
}

# finish NAME: the summary line; succeeds when no check failed.
finish() {
    echo "$1: $checks checks, $failures failures"
    [ "$failures" -eq 0 ]
}
