#!/bin/sh
# Sets up what isolates runs on the local target from the studio (compute/sandbox.py):
# bubblewrap, and the unprivileged account the runs execute as. Needs root; as another
# user it changes nothing and says what that means. Safe to re-run.
set -eu

account=${LOCAL_RUN_USER:-trainyard-run}

if [ "$(id -u)" -ne 0 ]; then
    echo "Trainyard is not started as root, so runs on the local target cannot execute as" \
        "another account: only staff may use the local target (see its page)." >&2
    exit 0
fi

if ! command -v bwrap >/dev/null 2>&1; then
    echo "Installing bubblewrap, the sandbox of local runs"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -qq --no-install-recommends bubblewrap >/dev/null 2>&1 || {
        apt-get update -qq && apt-get install -y -qq --no-install-recommends bubblewrap >/dev/null
    }
fi

if ! id -u "$account" >/dev/null 2>&1; then
    echo "Creating the account $account that local runs execute as"
    useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin "$account"
fi
