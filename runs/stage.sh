# stage NAME DONE_FILE COMMAND...: run COMMAND unless DONE_FILE exists; on failure stop the recipe with one line
# (the command's own error is above it); append "NAME<TAB>seconds" to $TIMES. Sourced by the recipes in runs/.
stage() {                             # stage NAME DONE_FILE COMMAND...: run COMMAND unless DONE_FILE exists
    local name=$1 done_file=$2; shift 2
    if [ -f "$done_file" ]; then
        echo "== $name: finished earlier ($done_file), skipped"
        return
    fi
    echo "== $name: $*"
    local t0=$SECONDS
    if ! "$@"; then
        echo "$(basename "$0"): stopped at $name (its error is above); the finished stages are kept in out/" >&2
        exit 1
    fi
    printf '%s\t%s\n' "$name" $((SECONDS - t0)) >> "$TIMES"
}

