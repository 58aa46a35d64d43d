# The command of a PySpark run, started by run.sh in the run's process group (the
# exec keeps it there, so cancelling the run stops the driver).
# Usage: sh spark-submit.sh MASTER PYTHON ENTRY [ARGS...]
# PYTHON is the interpreter the run's environment names; python3 leaves the
# cluster's own PYSPARK_PYTHON in force. Executors of a cluster master run on
# other nodes, which lack an environment built on the head node, so there only
# the driver uses it.
master=$1
python=$2
shift 2
if [ -z "$spark_submit" ]; then
    echo "Spark not found on the head node: spark-submit is not on PATH for user $(id -un). Install Spark or set SPARK_HOME in ~/.profile." >&2
    exit 127
fi
if [ "$python" != python3 ]; then
    export PYSPARK_DRIVER_PYTHON="$python"
    case "$master" in local*) export PYSPARK_PYTHON="$python" ;; esac
fi
echo "spark-submit --master $master $*" >&2
exec "$spark_submit" --master "$master" "$@"
