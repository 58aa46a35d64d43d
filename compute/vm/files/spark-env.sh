# The start of every Spark script Trainyard runs on a head node: the environment
# a login gives the user (HDInsight puts spark-submit on PATH; other installs set
# SPARK_HOME, JAVA_HOME or PYSPARK_PYTHON in ~/.profile), then where spark-submit is.
# An SSH command runs no login shell, so ~/.profile is read here.
if [ -r "$HOME/.profile" ]; then
    . "$HOME/.profile" > /dev/null 2>&1 < /dev/null
fi
spark_submit=$(command -v spark-submit 2>/dev/null)
if [ -z "$spark_submit" ] && [ -n "${SPARK_HOME:-}" ] && [ -x "$SPARK_HOME/bin/spark-submit" ]; then
    spark_submit=$SPARK_HOME/bin/spark-submit
fi
