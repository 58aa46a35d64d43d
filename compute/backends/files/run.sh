# One Trainyard run on a POSIX target, started detached (own session and process
# group) by launch.sh. Usage: sh run.sh RUN_DIR
# RUN_DIR/ctl holds what the control plane reads: pid (the process group),
# started, exit_code, and the prepare, stdout, stderr and metrics files.
run_dir=$1
ctl=$run_dir/ctl
wd=$run_dir/wd
echo $$ > "$ctl/pid.part" && mv "$ctl/pid.part" "$ctl/pid"
# A handler (not "ignore", which children would inherit) keeps this shell alive
# through a SIGTERM to the group, so it still records the script's exit code.
trap : TERM INT HUP

finish() {
    echo "$1" > "$ctl/exit_code.part"
    mv "$ctl/exit_code.part" "$ctl/exit_code"
    exit 0
}

. "$ctl/config.sh"

{
    echo "Unpacking the snapshot into $wd"
    mkdir -p "$wd" || finish 125
    # -S -E: no site packages or environment variables, so it starts in milliseconds.
    "$HOST_PYTHON" -S -E "$ctl/materialize.py" "$ctl/manifest" "$BLOBS" "$wd" || finish 125
    case "$ENV_KIND" in
    pip|conda)
        mkdir -p "$ENV_ROOT"
        # One build per definition and target; concurrent runs wait for it.
        exec 9> "$ENV_ROOT/$ENV_HASH.lock"
        command -v flock >/dev/null 2>&1 && flock 9
        if [ -f "$ENV_DIR/.ready" ]; then
            echo "Reusing environment $ENV_NAME ($ENV_HASH), built before on this target"
        else
            echo "Building environment $ENV_NAME ($ENV_HASH) in $ENV_DIR"
            rm -rf "$ENV_DIR"
            if [ "$ENV_KIND" = pip ]; then
                "$HOST_PYTHON" -m venv "$ENV_DIR" || finish 126
                # The requirements' own build code runs as the run's account, in its sandbox.
                [ -z "$RUN_OWNER" ] || chown -R "$RUN_OWNER" "$ENV_DIR" || finish 126
                if grep -qv '^[[:space:]]*\(#.*\)\{0,1\}$' "$ctl/requirements.txt"; then
                    sandboxed_build "$ENV_DIR/bin/python" -m pip install \
                        --disable-pip-version-check -r "$ctl/requirements.txt" || finish 126
                fi
            else
                [ -z "$RUN_OWNER" ] || { mkdir -p "$ENV_DIR" && chown "$RUN_OWNER" "$ENV_DIR"; } \
                    || finish 126
                sandboxed_build "$CONDA" env create --quiet -p "$ENV_DIR" \
                    -f "$ctl/environment.yml" || finish 126
            fi
            # Shared by later runs, so no run may change it after the build.
            [ -z "$RUN_OWNER" ] || chown -R "$(id -u):$(id -g)" "$ENV_DIR" || finish 126
            touch "$ENV_DIR/.ready"
        fi
        exec 9>&-
        ;;
    esac
} >> "$ctl/prepare" 2>&1

mkdir -p "$wd/outputs" "$wd/logs"
: > "$ctl/stdout"
: > "$ctl/stderr"
: > "$ctl/metrics"
if [ -n "$RUN_OWNER" ]; then
    chown -R "$RUN_OWNER" "$wd" "$ctl/metrics" || finish 125
fi
touch "$ctl/started"
cd "$wd" || finish 125
export PYTHONPATH="$ctl/lib${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1 TRAINYARD_METRICS_FILE="$ctl/metrics" TRAINYARD_RUN_ID="$RUN_ID"
if [ -n "$DOCKER_IMAGE" ]; then
    # As the target's user (or the run's account), so the run directory stays theirs.
    docker run --rm --init --name "$CONTAINER" -v "$run_dir:$run_dir" -w "$wd" \
        ${DOCKER_GPUS:+--gpus "$DOCKER_GPUS"} \
        --user "${RUN_OWNER:-$(id -u):$(id -g)}" -e HOME=/tmp \
        -e PYTHONPATH -e PYTHONUNBUFFERED -e TRAINYARD_METRICS_FILE -e TRAINYARD_RUN_ID \
        --entrypoint sh "$DOCKER_IMAGE" -c '
            if grep -qv "^[[:space:]]*\(#.*\)\{0,1\}$" "$0/requirements.txt" 2>/dev/null; then
                "$1" -m pip install --user --disable-pip-version-check -r "$0/requirements.txt" >&2 || exit 126
            fi
            exec "$@"' "$ctl" "$PYTHON" "$ENTRY" "$@" > "$ctl/stdout" 2> "$ctl/stderr" < /dev/null
else
    sandboxed "$PYTHON" "$ENTRY" "$@" > "$ctl/stdout" 2> "$ctl/stderr" < /dev/null
fi
finish $?
