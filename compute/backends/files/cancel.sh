# Stop a run: SIGTERM to its whole process group, a grace period, then SIGKILL;
# prints how many of its processes are left (0 when it is really gone).
# Usage: sh cancel.sh RUN_DIR GRACE_SECONDS [CONTAINER]
ctl=$1/ctl
grace=$2
container=${3:-}
pg=$(cat "$ctl/pid" 2>/dev/null || echo "")
left() {
    n=0
    if [ -n "$pg" ]; then
        # Zombies are dead already; they only wait for their parent to reap them.
        n=$(ps -eo pgid=,stat= | awk -v p="$pg" '$1 == p && $2 !~ /^Z/ {n++} END {print n + 0}')
    fi
    if [ -n "$container" ]; then
        c=$(docker ps -q --filter "name=^$container\$" 2>/dev/null | wc -l)
        n=$((n + c))
    fi
    echo "$n"
}
if [ -n "$pg" ]; then
    kill -TERM "-$pg" 2>/dev/null
    [ -n "$container" ] && docker kill --signal TERM "$container" > /dev/null 2>&1
    end=$(($(date +%s) + grace))
    while [ "$(left)" -gt 0 ] && [ "$(date +%s)" -lt $end ]; do
        sleep 0.2
    done
    kill -KILL "-$pg" 2>/dev/null
fi
[ -n "$container" ] && docker rm -f "$container" > /dev/null 2>&1
i=0
while [ "$(left)" -gt 0 ] && [ $i -lt 25 ]; do
    sleep 0.2
    i=$((i + 1))
done
left
