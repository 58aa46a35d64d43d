# Stop what a Spark run left outside its process group, after cancel.sh stopped
# the group: PySpark's worker daemon moves to a group of its own (it normally
# exits once the JVM that started it is gone). The run's processes are found by
# the environment run.sh exported to them; prints how many are left.
# Usage: sh spark-cancel.sh RUN_DIR GRACE_SECONDS
mark="TRAINYARD_METRICS_FILE=$1/ctl/metrics"
grace=$2
stragglers() {
    grep -lzxF "$mark" /proc/[0-9]*/environ 2>/dev/null | cut -d/ -f3
}
pids=$(stragglers)
if [ -n "$pids" ]; then
    # shellcheck disable=SC2086 # one pid a word
    kill -TERM $pids 2>/dev/null
    end=$(($(date +%s) + grace))
    while [ -n "$(stragglers)" ] && [ "$(date +%s)" -lt $end ]; do
        sleep 0.2
    done
    pids=$(stragglers)
    # shellcheck disable=SC2086
    [ -n "$pids" ] && kill -KILL $pids 2>/dev/null
fi
i=0
while [ -n "$(stragglers)" ] && [ $i -lt 25 ]; do
    sleep 0.2
    i=$((i + 1))
done
stragglers | wc -l
