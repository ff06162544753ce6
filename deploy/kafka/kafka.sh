#!/usr/bin/env bash
# deploy/kafka/kafka.sh: a real Apache Kafka (KRaft) cluster on this machine,
# for developers and CI. No Docker, and nothing is downloaded except through Maven.
#
#   kafka.sh fetch                                 resolve the Kafka jars once (Maven Central)
#   kafka.sh start  [--port 9092] [--brokers 1|3] [--config key=value]...
#   kafka.sh stop   [--port 9092]                  stop every node, delete the data
#   kafka.sh stop-broker  N [--port 9092]          stop one node, keep its data
#   kafka.sh start-broker N [--port 9092]          restart that node
#   kafka.sh status [--port 9092]                  exit 0 all up, 1 some up, 3 none
#   kafka.sh logs   [--port 9092]                  print the log file paths
#   kafka.sh cli CLASS [ARGS...]                   run a Kafka tool class on the same classpath
#
# Node N (1-based) listens on 127.0.0.1:PORT+N-1 (PLAINTEXT, clients) and
# 127.0.0.1:PORT+1000+N-1 (CONTROLLER, KRaft quorum). Nothing binds another address.
# `start` and `start-broker` print the bootstrap address alone on stdout once it
# serves requests; every other message goes to stderr. See README.md beside this file.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
KAFKA_VERSION=${KAFKA_VERSION:-4.4.0}
CACHE_ROOT=${EGRET_CACHE:-$HOME/.cache/egret}
STATE_ROOT=${EGRET_STATE:-$HOME/.cache/egret}
VERSION_DIR=$CACHE_ROOT/kafka/$KAFKA_VERSION
LIBS=$VERSION_DIR/libs
MARKER=$VERSION_DIR/fetched.ok
KAFKA_HEAP=${KAFKA_HEAP:-512m}
START_TIMEOUT=${KAFKA_START_TIMEOUT:-90}
STOP_TIMEOUT=${KAFKA_STOP_TIMEOUT:-20}
CONTROLLER_OFFSET=1000
HOST=127.0.0.1

PORT=9092
BROKERS=1
NODE=""
EXTRA_CONFIG=()

say() { printf 'kafka.sh: %s\n' "$*" >&2; }
die() { say "$*"; exit 1; }

usage() {
  sed -n '2,18p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
  exit "${1:-2}"
}

# ---------------------------------------------------------------- tooling ---

JAVA_VERSION_TEXT=""
need_java() {
  command -v java >/dev/null 2>&1 ||
    die "Java 17+ and Maven are needed: apt-get install openjdk-17-jre-headless maven"
  [[ -n $JAVA_VERSION_TEXT ]] && return 0
  local v major
  JAVA_VERSION_TEXT=$(java -version 2>&1)
  v=$(sed -n 's/.*version "\([^"]*\)".*/\1/p' <<<"$JAVA_VERSION_TEXT" | head -n1)
  major=${v%%.*}
  [[ $major =~ ^[0-9]+$ && $major -ge 17 ]] ||
    die "Java 17+ is needed (found '${v:-unknown}'): apt-get install openjdk-17-jre-headless"
}

need_maven() {
  command -v mvn >/dev/null 2>&1 ||
    die "Java 17+ and Maven are needed: apt-get install openjdk-17-jre-headless maven"
}

fetched() {
  [[ -f $MARKER ]] || return 1
  local jar
  while IFS= read -r jar; do
    [[ -f $LIBS/$jar ]] || return 1
  done <"$MARKER"
}

cmd_fetch() {
  need_java
  if fetched; then
    say "Kafka $KAFKA_VERSION already fetched: $LIBS"
    return 0
  fi
  need_maven
  say "resolving Kafka $KAFKA_VERSION with Maven into $LIBS (first time: a minute or two)"
  mkdir -p "$VERSION_DIR"
  local tmp
  tmp=$(mktemp -d "$VERSION_DIR/libs.tmp.XXXXXX")
  if ! mvn -B -q -Dstyle.color=never -f "$HERE/pom.xml" -Dkafka.version="$KAFKA_VERSION" \
      dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$tmp" 2>&1 |
      sed 's/\x1b\[[0-9;]*m//g' >&2; then # Debian's Maven 3.8 prints stray colour codes even with -q
    rm -rf "$tmp"
    die "mvn could not resolve org.apache.kafka:kafka_2.13:$KAFKA_VERSION (see above)"
  fi
  local j
  for j in "kafka_2.13-$KAFKA_VERSION.jar" "kafka-tools-$KAFKA_VERSION.jar" "kafka-clients-$KAFKA_VERSION.jar"; do
    [[ -f $tmp/$j ]] || { rm -rf "$tmp"; die "mvn finished but $j is missing"; }
  done
  rm -rf "$LIBS" "$VERSION_DIR/cds"
  mv "$tmp" "$LIBS"
  (cd "$LIBS" && ls -1 -- *.jar) >"$MARKER.tmp"
  mv "$MARKER.tmp" "$MARKER"
  say "fetched $(wc -l <"$MARKER") jars into $LIBS"
}

ensure_fetched() {
  need_java
  fetched || cmd_fetch
}

# JVM flags for a small box: serial GC, small heap, no hsperfdata files.
jvm_flags() {
  local flags=(-Xms128m "-Xmx$KAFKA_HEAP" -XX:+UseSerialGC
    "-XX:ActiveProcessorCount=${KAFKA_CPUS:-2}" -XX:+ExitOnOutOfMemoryError
    -XX:-UsePerfData -Djava.awt.headless=true)
  printf '%s\n' "${flags[@]}"
  # shellcheck disable=SC2086
  [[ -z ${KAFKA_JVM_OPTS:-} ]] || printf '%s\n' $KAFKA_JVM_OPTS
}

# Class-data sharing: the first run of node 1 dumps the classes it loaded into
# an archive when it exits (-XX:ArchiveClassesAtExit); later brokers and
# storage formats map it and start ~40% faster. Keyed by the exact JVM build;
# a stale or broken archive is ignored by the JVM. KAFKA_CDS=0 turns it off.
cds_archive() {
  local key
  need_java
  key=$(md5sum <<<"$JAVA_VERSION_TEXT" | cut -c1-10)
  printf '%s/cds/kafka-%s.jsa' "$VERSION_DIR" "$key"
}

# cds_flags use|dump NODE: the CDS flag for a broker or format JVM (maybe none).
cds_flags() {
  [[ ${KAFKA_CDS:-1} != 0 ]] || return 0
  local arch
  arch=$(cds_archive)
  if [[ -s $arch ]]; then
    echo "-XX:SharedArchiveFile=$arch"
  elif [[ $1 == dump ]]; then
    mkdir -p "${arch%/*}"
    echo "-XX:ArchiveClassesAtExit=$arch.tmp-$PORT-$2"
  fi
}

# After node N exited on its own (not SIGKILL), keep the archive it dumped.
cds_collect() {
  local arch tmp
  arch=$(cds_archive)
  tmp=$arch.tmp-$PORT-$1
  [[ -e $tmp ]] || return 0
  if [[ $2 == clean && -s $tmp && ! -e $arch ]]; then
    mv -f "$tmp" "$arch"
  else
    rm -f "$tmp"
  fi
}

tools_log4j() {
  local f=$VERSION_DIR/log4j2-tools.properties
  local tmp=$f.tmp.$BASHPID # expanded here: a redirection would expand it in the forked child
  mkdir -p "$VERSION_DIR"
  cat >"$tmp" <<'EOF'
status = warn
shutdownHook = disable
appender.err.type = Console
appender.err.name = STDERR
appender.err.target = SYSTEM_ERR
appender.err.layout.type = PatternLayout
appender.err.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = WARN
rootLogger.appenderRef.err.ref = STDERR
EOF
  mv -f "$tmp" "$f"
  printf '%s' "$f"
}

cmd_cli() {
  [[ $# -ge 1 ]] || die "usage: kafka.sh cli CLASS [ARGS...]  e.g. cli org.apache.kafka.tools.TopicCommand --bootstrap-server 127.0.0.1:9092 --list"
  ensure_fetched
  local cls=$1; shift
  local flags
  mapfile -t flags < <(KAFKA_HEAP=${KAFKA_TOOL_HEAP:-256m} jvm_flags)
  exec java "${flags[@]}" -Dlog4j2.configurationFile="$(tools_log4j)" -cp "$LIBS/*" "$cls" "$@"
}

# ----------------------------------------------------------------- layout ---

run_dir()        { printf '%s/kafka-run/%s' "$STATE_ROOT" "$PORT"; }
broker_port()    { echo $((PORT + $1 - 1)); }
controller_port(){ echo $((PORT + CONTROLLER_OFFSET + $1 - 1)); }
pid_file()       { printf '%s/pids/broker-%s.pid' "$(run_dir)" "$1"; }
config_file()    { printf '%s/config/broker-%s.properties' "$(run_dir)" "$1"; }
log_file()       { printf '%s/logs/broker-%s.log' "$(run_dir)" "$1"; }
out_file()       { printf '%s/logs/broker-%s.out' "$(run_dir)" "$1"; }
cluster_file()   { printf '%s/cluster.env' "$(run_dir)"; }

bootstrap_of() {
  local n=$1 i addrs=()
  for ((i = 1; i <= n; i++)); do addrs+=("$HOST:$(broker_port "$i")"); done
  local IFS=,
  printf '%s' "${addrs[*]}"
}

# Number of nodes of the cluster on $PORT, from its cluster.env (0 if none).
cluster_size() {
  local f
  f=$(cluster_file)
  if [[ -f $f ]]; then sed -n 's/^BROKERS=//p' "$f"; else echo 0; fi
}

node_pid() {
  local f
  f=$(pid_file "$1")
  if [[ -f $f ]]; then cat "$f" 2>/dev/null || true; fi
}

# True when node N of the cluster on $PORT is a live JVM running its config.
is_running() {
  local pid
  pid=$(node_pid "$1")
  [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "kafka.Kafka $(config_file "$1")"
}

port_in_use() { (exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null; }

# True when a Kafka broker answers an ApiVersions (v0) request on the port:
# the socket is bound early in startup, so a plain connect is not enough.
answers_api_versions() {
  local out
  # shellcheck disable=SC2016 # $0/$1 expand in the inner bash
  out=$(timeout 3 bash -c '
    exec 3<>"/dev/tcp/$0/$1" || exit 1
    printf "\x00\x00\x00\x0a\x00\x12\x00\x00\x00\x00\x00\x01\xff\xff" >&3
    head -c 10 <&3 | od -An -tx1' "$HOST" "$1" 2>/dev/null) || return 1
  # size(4) correlation id 1 (4) error code (2)
  out=${out//[[:space:]]/}
  [[ $out == 0000????00000001???? ]]
}

now() { printf '%s' "${EPOCHREALTIME/,/.}"; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

# ---------------------------------------------------------------- configs ---

write_configs() {
  local n=$1 dir i voters=() cid
  dir=$(run_dir)
  for ((i = 1; i <= n; i++)); do voters+=("$i@$HOST:$(controller_port "$i")"); done
  local IFS=,
  local voter_list="${voters[*]}"
  unset IFS
  local rf=$n min_isr=1
  ((n >= 3)) && min_isr=2

  cat >"$dir/config/log4j2.properties" <<'EOF'
# Broker logging: one rolling file per node, path given by -Degret.kafka.log.
status = warn
name = egret-kafka
# Keep logging while Kafka's own shutdown hook runs (file appenders flush each line).
shutdownHook = disable
appender.file.type = RollingFile
appender.file.name = FILE
appender.file.fileName = ${sys:egret.kafka.log}
appender.file.filePattern = ${sys:egret.kafka.log}.%i
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
appender.file.policies.type = Policies
appender.file.policies.size.type = SizeBasedTriggeringPolicy
appender.file.policies.size.size = 50MB
appender.file.strategy.type = DefaultRolloverStrategy
appender.file.strategy.max = 3
rootLogger.level = INFO
rootLogger.appenderRef.file.ref = FILE
logger.request.name = kafka.request.logger
logger.request.level = WARN
logger.state.name = state.change.logger
logger.state.level = WARN
EOF

  for ((i = 1; i <= n; i++)); do
    {
      echo "# Written by deploy/kafka/kafka.sh: node $i of $n (combined broker + KRaft controller)."
      echo "node.id=$i"
      echo "process.roles=broker,controller"
      echo "controller.quorum.voters=$voter_list"
      echo "listeners=PLAINTEXT://$HOST:$(broker_port "$i"),CONTROLLER://$HOST:$(controller_port "$i")"
      echo "advertised.listeners=PLAINTEXT://$HOST:$(broker_port "$i")"
      echo "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT"
      echo "controller.listener.names=CONTROLLER"
      echo "inter.broker.listener.name=PLAINTEXT"
      echo "log.dirs=$dir/data/broker-$i"
      echo "num.partitions=4"
      echo "default.replication.factor=$rf"
      echo "min.insync.replicas=$min_isr"
      echo "offsets.topic.replication.factor=$rf"
      echo "offsets.topic.num.partitions=8"
      echo "transaction.state.log.replication.factor=$rf"
      echo "transaction.state.log.min.isr=$min_isr"
      echo "transaction.state.log.num.partitions=8"
      echo "share.coordinator.state.topic.replication.factor=$rf"
      echo "share.coordinator.state.topic.min.isr=$min_isr"
      echo "# Topics are created by the application through the Admin API."
      echo "auto.create.topics.enable=false"
      echo "group.initial.rebalance.delay.ms=0"
      echo "num.network.threads=2"
      echo "num.io.threads=4"
      echo "num.recovery.threads.per.data.dir=1"
      echo "background.threads=4"
      if ((${#EXTRA_CONFIG[@]})); then
        echo "# --config overrides"
        printf '%s\n' "${EXTRA_CONFIG[@]}"
      fi
    } >"$(config_file "$i")"
  done

  # KRaft cluster ids are 16 random bytes in URL-safe base64 without padding,
  # not starting with '-' (Kafka's Uuid.randomUuid rule); the format step checks it.
  cid=-
  while [[ $cid == -* ]]; do
    cid=$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n')
  done
  {
    echo "BROKERS=$n"
    echo "CLUSTER_ID=$cid"
    echo "KAFKA_VERSION=$KAFKA_VERSION"
    echo "BOOTSTRAP=$(bootstrap_of "$n")"
  } >"$(cluster_file)"
}

format_storage() {
  local n=$1 dir i cid pids=() failed=0 flags log4j
  dir=$(run_dir)
  cid=$(sed -n 's/^CLUSTER_ID=//p' "$(cluster_file)")
  mapfile -t flags < <(KAFKA_HEAP=256m jvm_flags; cds_flags use)
  log4j=$(tools_log4j)
  for ((i = 1; i <= n; i++)); do
    java "${flags[@]}" -Dlog4j2.configurationFile="$log4j" -cp "$LIBS/*" \
      kafka.tools.StorageTool format --cluster-id "$cid" --config "$(config_file "$i")" \
      >"$dir/logs/format-$i.log" 2>&1 &
    pids+=($!)
  done
  for ((i = 1; i <= n; i++)); do
    if ! wait "${pids[$((i - 1))]}"; then
      say "formatting the storage of node $i failed:"
      tail -n 20 "$dir/logs/format-$i.log" >&2
      failed=1
    fi
  done
  ((failed == 0))
}

# ---------------------------------------------------------------- process ---

launch_node() {
  local i=$1 flags role=use
  # Only node 1 dumps the archive (once); a dump cut short by SIGKILL is dropped.
  [[ $i == 1 ]] && role=dump
  mapfile -t flags < <(jvm_flags; cds_flags "$role" "$i")
  rm -f "$(pid_file "$i")"
  echo "==== $(date -u '+%Y-%m-%dT%H:%M:%SZ') kafka.sh starting node $i" >>"$(out_file "$i")"
  # setsid: the broker outlives the calling shell and its Ctrl-C; the inner
  # bash records its own pid and then becomes the JVM (same pid).
  # shellcheck disable=SC2016 # $$, $0 and $@ belong to the inner bash
  setsid bash -c 'echo $$ >"$0"; exec "$@"' "$(pid_file "$i")" \
    java "${flags[@]}" \
    -Dlog4j2.configurationFile="$(run_dir)/config/log4j2.properties" \
    -Degret.kafka.log="$(log_file "$i")" -Dkafka.logs.dir="$(run_dir)/logs" \
    -cp "$LIBS/*" kafka.Kafka "$(config_file "$i")" \
    </dev/null >>"$(out_file "$i")" 2>&1 &
  local t=0
  while [[ ! -s $(pid_file "$i") ]] && ((t < 50)); do sleep 0.1; t=$((t + 1)); done
  [[ -s $(pid_file "$i") ]] || die "node $i did not start (no pid file)"
}

show_failure() {
  local i=$1
  say "---- tail of $(log_file "$i")"
  tail -n 40 "$(log_file "$i")" >&2 2>/dev/null || true
  say "---- tail of $(out_file "$i")"
  tail -n 20 "$(out_file "$i")" >&2 2>/dev/null || true
}

# Wait until every listed node answers ApiVersions; on failure show logs, return 1.
wait_ready() {
  local t0 nodes=("$@") pending i still
  t0=$(now)
  pending=("${nodes[@]}")
  while ((${#pending[@]})); do
    still=()
    for i in "${pending[@]}"; do
      if ! is_running "$i"; then
        say "node $i exited during startup"
        show_failure "$i"
        return 1
      fi
      answers_api_versions "$(broker_port "$i")" || still+=("$i")
    done
    pending=("${still[@]+"${still[@]}"}")
    ((${#pending[@]})) || break
    if awk -v e="$(elapsed "$t0")" -v m="$START_TIMEOUT" 'BEGIN { exit !(e >= m) }'; then
      say "timed out after ${START_TIMEOUT}s waiting for node(s) ${pending[*]}"
      for i in "${pending[@]}"; do show_failure "$i"; done
      return 1
    fi
    sleep 0.25
  done
}

# stop_nodes LAST_GRACE N...: SIGTERM the listed nodes and wait for them.
# A node still up STOP_TIMEOUT seconds after SIGTERM gets SIGKILL. LAST_GRACE
# (seconds, 0 = off) is for a full stop of a multi-node cluster: once the other
# nodes are gone, the last one cannot commit its controlled shutdown (no KRaft
# quorum left) and would hang, so it gets SIGKILL that much sooner.
# Sets STOPPED to the number of nodes that were running.
STOPPED=0
stop_nodes() {
  local last_grace=$1; shift
  local i pid all=() entry left t0 killed=0 lonely_since=-1 killed_ids=" "
  for i in "$@"; do
    if is_running "$i"; then
      pid=$(node_pid "$i")
      kill -TERM "$pid" 2>/dev/null || true
      all+=("$i:$pid")
    fi
    rm -f "$(pid_file "$i")"
  done
  STOPPED=${#all[@]}
  ((${#all[@]})) || return 0
  t0=$SECONDS
  while :; do
    left=()
    for entry in "${all[@]}"; do
      if kill -0 "${entry#*:}" 2>/dev/null; then left+=("$entry"); fi
    done
    ((${#left[@]})) || break
    if ((last_grace > 0 && ${#all[@]} > 1 && ${#left[@]} == 1 && lonely_since < 0)); then
      lonely_since=$SECONDS
    fi
    if ((killed == 0)) && { ((SECONDS - t0 >= STOP_TIMEOUT)) ||
        ((lonely_since >= 0 && SECONDS - lonely_since >= last_grace)); }; then
      for entry in "${left[@]}"; do
        if ((lonely_since >= 0)); then
          say "node ${entry%%:*} (pid ${entry#*:}) is the last of the quorum and cannot finish a controlled shutdown: SIGKILL"
        else
          say "node ${entry%%:*} (pid ${entry#*:}) still up $((SECONDS - t0))s after SIGTERM: SIGKILL"
        fi
        kill -KILL "${entry#*:}" 2>/dev/null || true
        killed_ids+="${entry%%:*} "
      done
      killed=1
    fi
    sleep 0.2
  done
  local ids=()
  for entry in "${all[@]}"; do
    i=${entry%%:*}
    ids+=("$i")
    if [[ $killed_ids == *" $i "* ]]; then cds_collect "$i" killed; else cds_collect "$i" clean; fi
  done
  say "stopped node(s) ${ids[*]} in $((SECONDS - t0))s"
}

# --------------------------------------------------------------- commands ---

cmd_start() {
  [[ $BROKERS == 1 || $BROKERS == 3 ]] || die "--brokers must be 1 or 3"
  local dir n i running=0
  dir=$(run_dir)
  n=$(cluster_size)
  if ((n > 0)); then
    for ((i = 1; i <= n; i++)); do is_running "$i" && running=$((running + 1)); done
    if ((running == n)); then
      ((n == BROKERS)) ||
        die "a $n-broker cluster is already running on port $PORT; stop it first (kafka.sh stop --port $PORT)"
      say "Kafka already running on port $PORT ($n broker(s))"
      bootstrap_of "$n"; echo
      return 0
    elif ((running > 0)); then
      die "the cluster on port $PORT is partly running ($running of $n); use start-broker N or stop"
    fi
  fi
  for ((i = 1; i <= BROKERS; i++)); do
    for p in "$(broker_port "$i")" "$(controller_port "$i")"; do
      port_in_use "$p" && die "port $p on $HOST is already in use by another process"
    done
  done
  ((PORT + CONTROLLER_OFFSET + BROKERS - 1 <= 65535)) || die "--port $PORT too high (controllers use PORT+$CONTROLLER_OFFSET)"
  ensure_fetched

  local t0
  t0=$(now)
  rm -rf "$dir"
  mkdir -p "$dir/config" "$dir/data" "$dir/logs" "$dir/pids"
  write_configs "$BROKERS"
  if ! format_storage "$BROKERS"; then
    rm -rf "$dir/data" "$dir/pids" "$(cluster_file)"
    die "Kafka failed to start on port $PORT (logs: $dir/logs)"
  fi
  local tf
  tf=$(now)
  for ((i = 1; i <= BROKERS; i++)); do launch_node "$i"; done
  local nodes=()
  for ((i = 1; i <= BROKERS; i++)); do nodes+=("$i"); done
  if ! wait_ready "${nodes[@]}"; then
    stop_nodes 3 "${nodes[@]}" 2>/dev/null || true
    rm -rf "$dir/data" "$dir/pids" "$(cluster_file)"
    die "Kafka failed to start on port $PORT (logs: $dir/logs)"
  fi
  say "Kafka $KAFKA_VERSION up on port $PORT with $BROKERS broker(s) in $(elapsed "$t0")s (format $(awk -v a="$t0" -v b="$tf" 'BEGIN{printf "%.1f", b-a}')s, brokers $(elapsed "$tf")s); logs in $dir/logs"
  bootstrap_of "$BROKERS"; echo
}

cmd_stop() {
  local dir n i nodes=() f
  dir=$(run_dir)
  n=$(cluster_size)
  for ((i = 1; i <= n; i++)); do nodes+=("$i"); done
  # Also catch pid files of a run whose cluster.env is gone.
  for f in "$dir"/pids/broker-*.pid; do
    [[ -e $f ]] || continue
    i=${f##*/broker-}; i=${i%.pid}
    [[ " ${nodes[*]-} " == *" $i "* ]] || nodes+=("$i")
  done
  if ((${#nodes[@]})); then
    stop_nodes "${KAFKA_LAST_NODE_GRACE:-3}" "${nodes[@]}"
  fi
  if [[ -d $dir ]]; then
    rm -rf "$dir/data" "$dir/pids" "$(cluster_file)"
  fi
  if ((STOPPED > 0)); then
    say "Kafka on port $PORT stopped; data removed, logs kept in $dir/logs"
  else
    say "no Kafka running on port $PORT${nodes[*]:+ (stale state removed)}"
  fi
}

need_cluster_node() {
  local n
  n=$(cluster_size)
  ((n > 0)) || die "no cluster was started on port $PORT (kafka.sh start --port $PORT)"
  if ! [[ $NODE =~ ^[0-9]+$ ]] || ((NODE < 1 || NODE > n)); then
    die "node must be 1..$n for the cluster on port $PORT"
  fi
}

cmd_stop_broker() {
  need_cluster_node
  if ! is_running "$NODE"; then
    say "node $NODE on port $PORT is not running"
    return 0
  fi
  stop_nodes 0 "$NODE"
}

cmd_start_broker() {
  need_cluster_node
  ensure_fetched
  local n
  n=$(cluster_size)
  if is_running "$NODE"; then
    say "node $NODE already running (pid $(node_pid "$NODE"))"
  else
    local p
    for p in "$(broker_port "$NODE")" "$(controller_port "$NODE")"; do
      port_in_use "$p" && die "port $p on $HOST is already in use by another process"
    done
    local t0
    t0=$(now)
    launch_node "$NODE"
    wait_ready "$NODE" || die "node $NODE failed to start (logs: $(run_dir)/logs)"
    say "node $NODE up on $HOST:$(broker_port "$NODE") in $(elapsed "$t0")s"
  fi
  bootstrap_of "$n"; echo
}

cmd_status() {
  local n i up=0 pid
  n=$(cluster_size)
  if ((n == 0)); then
    echo "no Kafka cluster on port $PORT"
    return 3
  fi
  for ((i = 1; i <= n; i++)); do
    if is_running "$i"; then
      up=$((up + 1)); pid=$(node_pid "$i")
      echo "broker $i: running  pid $pid  $HOST:$(broker_port "$i") (controller $HOST:$(controller_port "$i"))"
    else
      echo "broker $i: stopped  $HOST:$(broker_port "$i") (controller $HOST:$(controller_port "$i"))"
    fi
  done
  echo "bootstrap: $(bootstrap_of "$n")"
  echo "data: $(run_dir)/data  logs: $(run_dir)/logs"
  ((up == n)) && return 0
  ((up > 0)) && return 1
  return 3
}

cmd_logs() {
  local dir f found=0
  dir=$(run_dir)
  for f in "$dir"/logs/broker-*.log "$dir"/logs/broker-*.out "$dir"/logs/format-*.log; do
    [[ -e $f ]] || continue
    echo "$f"; found=1
  done
  ((found)) || say "no logs under $dir/logs"
}

# ------------------------------------------------------------------- main ---

parse_opts() {
  while (($#)); do
    case $1 in
      --port) PORT=${2:?--port needs a value}; shift 2 ;;
      --port=*) PORT=${1#*=}; shift ;;
      --brokers) BROKERS=${2:?--brokers needs a value}; shift 2 ;;
      --brokers=*) BROKERS=${1#*=}; shift ;;
      --config) EXTRA_CONFIG+=("${2:?--config needs key=value}"); shift 2 ;;
      --config=*) EXTRA_CONFIG+=("${1#*=}"); shift ;;
      -h|--help) usage 0 ;;
      -*) die "unknown option $1" ;;
      *)
        [[ -z $NODE ]] || die "unexpected argument $1"
        NODE=$1; shift ;;
    esac
  done
  if ! [[ $PORT =~ ^[0-9]+$ ]] || ((PORT < 1024 || PORT > 64000)); then
    die "--port must be 1024..64000"
  fi
}

main() {
  (($#)) || usage 2
  local cmd=$1; shift
  case $cmd in
    fetch) cmd_fetch ;;
    cli|run-class) cmd_cli "$@" ;;
    start|stop|status|logs|stop-broker|start-broker)
      parse_opts "$@"
      case $cmd in
        start|stop|status|logs) [[ -z $NODE ]] || die "unexpected argument $NODE" ;;
        *) [[ -n $NODE ]] || die "usage: kafka.sh $cmd N [--port P]" ;;
      esac
      case $cmd in
        start) cmd_start ;;
        stop) cmd_stop ;;
        status) cmd_status ;;
        logs) cmd_logs ;;
        stop-broker) cmd_stop_broker ;;
        start-broker) cmd_start_broker ;;
      esac
      ;;
    -h|--help|help) usage 0 ;;
    *) say "unknown command $cmd"; usage 2 ;;
  esac
}

main "$@"
