#!/bin/sh
# Builds the image managed-cluster nodes run (CLUSTER_NODE_IMAGE's default).
# There is no registry to pull from, so the root file system comes from
# debootstrap; its tarball is cached so re-importing after `docker rmi` is fast.
# The tag carries the image's version: a change of what the image holds bumps
# it, so an engine with an older image builds the new one instead of keeping it.
set -eu

VERSION=2
IMAGE=trainyard/node:bookworm-$VERSION
DATA_DIR=${DATA_DIR:-.trainyard}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}

docker image inspect "$IMAGE" >/dev/null 2>&1 && exit 0

cache_dir="$DATA_DIR/images"
tarball="$cache_dir/node-bookworm-$VERSION.tar"
mkdir -p "$cache_dir"

if [ ! -s "$tarball" ]; then
    echo "Building the node root file system with debootstrap (a few minutes; log in $cache_dir/debootstrap.log)"
    rootfs=$(mktemp -d)
    trap 'rm -rf "$rootfs"' EXIT
    if ! debootstrap --variant=minbase --include=python3-minimal,python3,procps,openssh-server \
            bookworm "$rootfs" "$MIRROR" >"$cache_dir/debootstrap.log" 2>&1; then
        echo "debootstrap failed; last lines of $cache_dir/debootstrap.log:" >&2
        tail -n 20 "$cache_dir/debootstrap.log" >&2
        exit 1
    fi
    # Every node generates its own host keys when it starts: keys baked into
    # the image would be shared by every node of every cluster.
    rm -f "$rootfs"/etc/ssh/ssh_host_*
    # Write to a temporary name so an interrupted build never leaves a
    # truncated tarball that later runs would trust.
    tar -C "$rootfs" -c . >"$tarball.part"
    mv "$tarball.part" "$tarball"
fi

docker import --change 'CMD ["/bin/bash"]' "$tarball" "$IMAGE" >/dev/null
echo "Built $IMAGE"
