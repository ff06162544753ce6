//! Producing to Kafka: an idempotent producer (acks=all, no reordering or duplicates
//! on retry) used for derived topics, dead letters and the simulator's input.

use super::{KafkaConfig, broker_err};
use crate::{Acked, IngestError, OutRecord, Sink};
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::types::RDKafkaErrorCode;
use std::time::Duration;

pub struct KafkaSink {
    producer: FutureProducer,
    namespace: String,
}

impl KafkaSink {
    pub fn new(config: &KafkaConfig) -> Result<KafkaSink, IngestError> {
        let producer = config
            .client()
            .set("enable.idempotence", "true")
            // Keyed records land where the embedded log puts them (`partition_for`).
            .set("partitioner", "fnv1a_random")
            .set("acks", "all")
            .set("linger.ms", "5")
            .set("compression.type", "lz4")
            .set("queue.buffering.max.messages", "200000")
            .set("message.timeout.ms", "120000")
            .create()
            .map_err(broker_err("creating the producer"))?;
        Ok(KafkaSink { producer, namespace: config.namespace.clone() })
    }

    /// Waits until everything sent has been acknowledged.
    pub fn flush(&self, timeout: Duration) -> Result<(), IngestError> {
        self.producer.flush(timeout).map_err(broker_err("flushing the producer"))
    }
}

impl Sink for KafkaSink {
    async fn send(&self, records: Vec<OutRecord>) -> Result<(), IngestError> {
        self.start_send(records).await?.await
    }

    async fn start_send(&self, records: Vec<OutRecord>) -> Result<Acked, IngestError> {
        let mut pending = Vec::with_capacity(records.len());
        // A batch goes to a handful of topics: name each once, not once a record.
        let mut names: Vec<(&str, String)> = Vec::new();
        for r in &records {
            let known = names.iter().position(|(short, _)| *short == r.topic);
            let at = known.unwrap_or_else(|| {
                names.push((&r.topic, format!("{}{}", self.namespace, r.topic)));
                names.len() - 1
            });
            let topic = names[at].1.as_str();
            let mut record: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(topic).payload(&r.payload[..]);
            // librdkafka allocates a header list even for none.
            if !r.headers.is_empty() {
                let mut headers = OwnedHeaders::new_with_capacity(r.headers.len());
                for (k, v) in &r.headers {
                    headers = headers.insert(Header { key: k, value: Some(v) });
                }
                record = record.headers(headers);
            }
            if let Some(key) = &r.key {
                record = record.key(&key[..]);
            }
            if let Some(p) = r.partition {
                record = record.partition(p as i32);
            }
            if let Some(ts) = r.timestamp_ms {
                record = record.timestamp(ts);
            }
            // Enqueue without waiting; when the local queue is full, wait for room.
            loop {
                match self.producer.send_result(record) {
                    Ok(delivery) => {
                        pending.push(delivery);
                        break;
                    }
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                        record = back;
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                    Err((e, _)) => return Err(IngestError::Broker(format!("producing to {}: {e}", r.topic))),
                }
            }
        }
        // The producer keeps order per partition across calls (idempotence), so a
        // later call's records cannot overtake these while they wait here.
        Ok(Box::pin(async move {
            for delivery in pending {
                match delivery.await {
                    Ok(Ok(_)) => {}
                    Ok(Err((e, _))) => return Err(IngestError::Broker(format!("delivery failed: {e}"))),
                    Err(_) => return Err(IngestError::Broker("the producer was dropped before delivery".into())),
                }
            }
            Ok(())
        }))
    }
}
