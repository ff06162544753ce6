#!/bin/sh
# Creates (or brings up to date) the topics listed in topics.conf, for the compose
# file's one-shot topic-init job. Runs in the apache/kafka image, whose CLI tools are
# in /opt/kafka/bin.
#
# Egret instances would create missing topics themselves, but with 4 partitions,
# replication 1 and no retention settings (KafkaConfig's defaults): the cluster's
# layout is decided here, before any instance starts.
#
#   BOOTSTRAP    brokers (default kafka-1:9092,kafka-2:9092,kafka-3:9092)
#   REPLICATION  replication factor (default 3)
#   MIN_ISR      min.insync.replicas (default 2: acks=all still succeeds with a broker down)
#   TOPICS       the topic table (default /init/topics.conf)
set -eu

BOOTSTRAP=${BOOTSTRAP:-kafka-1:9092,kafka-2:9092,kafka-3:9092}
REPLICATION=${REPLICATION:-3}
MIN_ISR=${MIN_ISR:-2}
TOPICS=${TOPICS:-/init/topics.conf}
BIN=/opt/kafka/bin
# Record timestamps are the collector's clock; a replay may be dated anywhere.
ANY_TIMESTAMP=message.timestamp.after.max.ms=9223372036854775807

failed=0
while read -r name partitions configs; do
    case $name in '' | '#'*) continue ;; esac
    all="$configs,$ANY_TIMESTAMP,min.insync.replicas=$MIN_ISR"
    set -- $(printf '%s' "$all" | tr ',' ' ' | sed 's/[^ ]*/--config &/g')
    "$BIN/kafka-topics.sh" --bootstrap-server "$BOOTSTRAP" --create --if-not-exists \
        --topic "$name" --partitions "$partitions" --replication-factor "$REPLICATION" "$@" </dev/null
    # An existing topic keeps its partitions: say so when they differ, since the
    # repartition topic's count is fixed by the binary and the inputs' is the
    # pipeline's parallelism.
    have=$("$BIN/kafka-topics.sh" --bootstrap-server "$BOOTSTRAP" --describe --topic "$name" </dev/null |
        sed -n 's/.*PartitionCount: *\([0-9]*\).*/\1/p' | head -n 1)
    if [ "$have" != "$partitions" ]; then
        echo "create-topics: $name has $have partitions, topics.conf says $partitions" >&2
        failed=1
    fi
    # Configs converge on every run, so editing topics.conf and rerunning the job
    # applies a new retention without recreating anything.
    "$BIN/kafka-configs.sh" --bootstrap-server "$BOOTSTRAP" --alter --entity-type topics \
        --entity-name "$name" --add-config "$all" </dev/null >/dev/null
    echo "create-topics: $name ready ($have partitions, $configs)"
done <"$TOPICS"
exit "$failed"
