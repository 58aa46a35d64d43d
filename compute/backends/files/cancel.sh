# Stop a run: SIGTERM to its whole process group and to every process carrying the
# run's mark (launch.sh exports it, so children that left the group with setsid
# keep it), a grace period, then SIGKILL; prints how many of its processes are
# left (0 when it is really gone).
# Usage: sh cancel.sh RUN_DIR GRACE_SECONDS [CONTAINER]
ctl=$1/ctl
mark="TRAINYARD_RUN_MARK=${1##*/}"
grace=$2
container=${3:-}
pg=$(cat "$ctl/pid" 2>/dev/null || echo "")
marked() {
    # A zombie's environ reads empty: it is dead already, waiting to be reaped.
    grep -lzxF "$mark" /proc/[0-9]*/environ 2>/dev/null | cut -d/ -f3
}
members() {
    {
        [ -n "$pg" ] && ps -eo pid=,pgid=,stat= | awk -v p="$pg" '$2 == p && $3 !~ /^Z/ {print $1}'
        marked
    } | sort -u
}
signal() {
    [ -n "$pg" ] && kill "-$1" "-$pg" 2>/dev/null
    pids=$(marked)
    # shellcheck disable=SC2086 # one pid a word
    [ -n "$pids" ] && kill "-$1" $pids 2>/dev/null
}
left() {
    n=$(members | wc -l)
    if [ -n "$container" ]; then
        c=$(docker ps -q --filter "name=^$container\$" 2>/dev/null | wc -l)
        n=$((n + c))
    fi
    echo "$n"
}
signal TERM
[ -n "$container" ] && docker kill --signal TERM "$container" > /dev/null 2>&1
end=$(($(date +%s) + grace))
while [ "$(left)" -gt 0 ] && [ "$(date +%s)" -lt $end ]; do
    sleep 0.2
done
[ -n "$container" ] && docker rm -f "$container" > /dev/null 2>&1
i=0
while [ "$(left)" -gt 0 ] && [ $i -lt 25 ]; do
    # Again each time: a marked process may have started another since.
    signal KILL
    sleep 0.2
    i=$((i + 1))
done
left
