# Status and new output of a run in one round trip.
# Usage: sh poll.sh RUN_DIR LIMIT OFFSET_prepare OFFSET_stdout OFFSET_stderr OFFSET_metrics
# Prints "PGID ALIVE EXIT_CODE STARTED N_prepare N_stdout N_stderr N_metrics" and a
# newline, then the N_* new bytes of each file in that order.
ctl=$1/ctl
limit=$2
shift 2
pg=$(cat "$ctl/pid" 2>/dev/null || echo 0)
# Alive is read before the exit code: run.sh writes the code before it exits,
# so "not alive and no code" really means the process vanished. (dash's kill
# takes no "--"; after -0, "-PGID" names the process group.)
alive=0
[ "$pg" != 0 ] && kill -0 "-$pg" 2>/dev/null && alive=1
code=$(cat "$ctl/exit_code" 2>/dev/null || echo -)
started=0
[ -e "$ctl/started" ] && started=1
header="$pg $alive $code $started"
plan=""
for name in prepare stdout stderr metrics; do
    off=$1
    shift
    size=$(stat -c %s "$ctl/$name" 2>/dev/null || echo 0)
    take=$((size - off))
    [ $take -lt 0 ] && take=0
    [ $take -gt "$limit" ] && take=$limit
    header="$header $take"
    plan="$plan $name:$off:$take"
done
echo "$header"
for item in $plan; do
    name=${item%%:*}
    rest=${item#*:}
    off=${rest%%:*}
    take=${rest#*:}
    [ "$take" -gt 0 ] && tail -c "+$((off + 1))" "$ctl/$name" | head -c "$take"
done
exit 0
