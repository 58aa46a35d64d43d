# Start run.sh in its own session, detached from this shell and its connection,
# and print the process group id once the run has recorded it.
run_dir=$1
ctl=$run_dir/ctl
# Every process of the run inherits the mark, also those that leave its process
# group: cancel.sh finds them by it. The run directory is named after the run.
export TRAINYARD_RUN_MARK="${run_dir##*/}"
# What an earlier run with this id left here (an earlier attempt, or another
# Trainyard whose run ids overlap on this target) must not pass for this run's
# state, output or files.
rm -rf "$run_dir/wd"
rm -f "$ctl/pid" "$ctl/exit_code" "$ctl/started" "$ctl/prepare" "$ctl/stdout" "$ctl/stderr" \
    "$ctl/metrics"
setsid sh "$ctl/run.sh" "$run_dir" > /dev/null 2>&1 < /dev/null &
i=0
while [ ! -s "$ctl/pid" ]; do
    i=$((i + 1))
    if [ $i -gt 200 ]; then
        echo "The run's shell did not start within 10 s on this target." >&2
        exit 1
    fi
    sleep 0.05
done
cat "$ctl/pid"
