#!/bin/sh
# Builds the image managed-cluster nodes run (CLUSTER_NODE_IMAGE's default) on
# the engine DOCKER_HOST names (else the local one), as creating a cluster on
# an engine without it does: compute/node_image.py holds how.
set -eu
cd "$(dirname "$0")/.."
exec "${PYTHON:-.venv/bin/python}" manage.py node_image
