# Start run.sh in its own session, detached from this shell and its connection,
# and print the process group id once the run has recorded it.
run_dir=$1
ctl=$run_dir/ctl
rm -f "$ctl/pid"
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
