#!/bin/sh
# Installs the Debian packages the test suite needs (real sshd, dockerd,
# PostgreSQL, Chromium, debootstrap for the node image, Java for Spark and a JDK to
# build the JAR that the Databricks tests run). Safe to re-run:
# apt is only touched when something is missing.
set -eu

PACKAGES="docker.io openssh-server chromium postgresql debootstrap iproute2 procps rsync openjdk-17-jre-headless openjdk-17-jdk-headless bubblewrap"

missing=""
for pkg in $PACKAGES; do
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
        missing="$missing $pkg"
    fi
done
[ -z "$missing" ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
    echo "Missing Debian packages:$missing; run this script as root to install them." >&2
    exit 1
fi

echo "Installing:$missing"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# shellcheck disable=SC2086 # the package list is meant to split into words
apt-get install -y -qq --no-install-recommends $missing >/dev/null
