#!/bin/sh
# Starts a local dockerd for the managed-cluster backend and its tests unless
# one already answers. No bridge and no iptables: this machine's only network
# is loopback, so containers use --network host.
set -eu

DATA_DIR=${DATA_DIR:-.trainyard}

docker info >/dev/null 2>&1 && exit 0

mkdir -p "$DATA_DIR"
log="$DATA_DIR/dockerd.log"
# setsid: dockerd must outlive this script and not receive the Ctrl-C meant
# for the test run that started it.
setsid dockerd --iptables=false --bridge=none --storage-driver=overlay2 >>"$log" 2>&1 </dev/null &

i=0
while [ $i -lt 60 ]; do
    docker info >/dev/null 2>&1 && exit 0
    sleep 0.5
    i=$((i + 1))
done
echo "dockerd did not become ready within 30 s; last lines of $log:" >&2
tail -n 20 "$log" >&2
exit 1
