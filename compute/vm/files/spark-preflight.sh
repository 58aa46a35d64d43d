# What a PySpark run needs on the head node, one key=value per line.
echo "spark_submit=$spark_submit"
[ -n "$spark_submit" ] || exit 0
out=$("$spark_submit" --version 2>&1)
version=$(printf '%s\n' "$out" | grep -m 1 -o 'version [0-9][0-9.]*')
echo "spark_version=${version#version }"
[ -n "$version" ] && echo "spark_error=" || echo "spark_error=$(printf '%s\n' "$out" | tail -n 3 | tr '\n' ' ')"
home=${SPARK_HOME:-$(dirname "$(dirname "$(readlink -f "$spark_submit")")")}
echo "spark_home=$home"
conf=${SPARK_CONF_DIR:-$home/conf}
echo "spark_defaults_master=$(awk '$1 == "spark.master" {print $2}' "$conf/spark-defaults.conf" 2>/dev/null | tail -n 1)"
echo "yarn=$(command -v yarn 2>/dev/null)"
echo "hadoop_conf_dir=${HADOOP_CONF_DIR:-${YARN_CONF_DIR:-}}"
python=${PYSPARK_PYTHON:-python3}
echo "spark_python=$(command -v "$python" 2>/dev/null)"
echo "spark_python_version=$("$python" -c 'import platform; print(platform.python_version())' 2>/dev/null)"
