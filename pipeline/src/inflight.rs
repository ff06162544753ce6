//! Outputs acknowledged in the background. A stage hands a batch's outputs to the
//! producer and goes on to its next batch while the broker acknowledges them; the
//! batch's input offsets are committed only once its outputs, and those of every
//! batch before it, are acknowledged, so a committed offset still never runs ahead
//! of what it produced. A checkpoint waits for everything in flight first, for the
//! same reason. Waiting for acknowledgements before the next poll was half of a
//! stage-1 turn at 20,000 events/s (`egret bench`'s loop phases): records queued
//! behind it the whole time.

use egret_ingest::{Acked, IngestError, Record, Source};
use std::collections::VecDeque;
use std::task::{Context, Poll, Waker};

/// Batches whose outputs may be unacknowledged before the oldest is waited for:
/// bounds what a stage holds and how far commits lag.
pub const MAX_IN_FLIGHT: usize = 4;

struct Batch {
    acks: Vec<Acked>,
    /// The last offset of each (topic, partition) the batch read.
    offsets: Vec<(String, u32, u64)>,
}

#[derive(Default)]
pub struct InFlight {
    batches: VecDeque<Batch>,
}

impl InFlight {
    /// Notes a batch's input and the acknowledgements of what it produced.
    pub fn push(&mut self, records: &[Record], acks: Vec<Acked>) {
        let offsets = crate::runner::last_offsets(records).into_iter().map(|(topic, partition, offset)| (topic.to_owned(), partition, offset)).collect();
        self.batches.push_back(Batch { acks, offsets });
    }

    /// Commits the oldest batches already acknowledged, without waiting, then waits
    /// for the oldest while more than `MAX_IN_FLIGHT` are out.
    pub async fn settle<S: Source>(&mut self, source: &mut S) -> Result<(), IngestError> {
        self.settle_down_to(source, MAX_IN_FLIGHT).await
    }

    /// Waits for everything in flight and commits it.
    pub async fn settle_all<S: Source>(&mut self, source: &mut S) -> Result<(), IngestError> {
        self.settle_down_to(source, 0).await
    }

    async fn settle_down_to<S: Source>(&mut self, source: &mut S, limit: usize) -> Result<(), IngestError> {
        loop {
            let over = self.batches.len() > limit;
            let Some(oldest) = self.batches.front_mut() else { break };
            if over {
                for ack in oldest.acks.drain(..) {
                    ack.await?;
                }
            } else {
                drop_acknowledged(&mut oldest.acks)?;
                if !oldest.acks.is_empty() {
                    break;
                }
            }
            let Some(done) = self.batches.pop_front() else { break };
            for (topic, partition, offset) in &done.offsets {
                source.commit(topic, *partition, *offset)?;
            }
        }
        Ok(())
    }
}

/// Drops the acknowledgements that have arrived, keeping those still pending; the
/// first failure is returned. Polled without a waker: the stage looks again on its
/// next turn, at most a poll interval later.
fn drop_acknowledged(acks: &mut Vec<Acked>) -> Result<(), IngestError> {
    let mut cx = Context::from_waker(Waker::noop());
    let mut failure = None;
    acks.retain_mut(|ack| match ack.as_mut().poll(&mut cx) {
        Poll::Ready(Ok(())) => false,
        Poll::Ready(Err(e)) => {
            failure.get_or_insert(e);
            false
        }
        Poll::Pending => true,
    });
    failure.map_or(Ok(()), Err)
}

#[cfg(test)]
mod tests {
    use super::*;
    use egret_ingest::Poll as Polled;
    use tokio::sync::oneshot;

    /// Notes commits; never delivers.
    #[derive(Default)]
    struct Commits(Vec<(String, u32, u64)>);

    impl Source for Commits {
        async fn poll(&mut self, _: usize) -> Result<Polled, IngestError> {
            Ok(Polled::Idle)
        }
        fn commit(&mut self, topic: &str, partition: u32, offset: u64) -> Result<(), IngestError> {
            self.0.push((topic.to_owned(), partition, offset));
            Ok(())
        }
    }

    fn read(partition: u32, offset: u64) -> Record {
        Record { topic: "in".into(), partition, offset, key: None, payload: Default::default(), headers: Vec::new(), timestamp_ms: None }
    }

    /// An acknowledgement that arrives when the sender says.
    fn ack() -> (oneshot::Sender<Result<(), IngestError>>, Acked) {
        let (tx, rx) = oneshot::channel();
        (tx, Box::pin(async move { rx.await.unwrap_or(Err(IngestError::Closed)) }))
    }

    #[tokio::test]
    async fn a_batch_is_committed_only_once_it_and_every_earlier_batch_are_acknowledged() {
        let mut source = Commits::default();
        let mut in_flight = InFlight::default();
        let (first, first_ack) = ack();
        let (second, second_ack) = ack();
        in_flight.push(&[read(0, 5), read(1, 9), read(0, 7)], vec![first_ack]);
        in_flight.push(&[read(0, 8)], vec![second_ack]);
        let _ = second.send(Ok(()));
        in_flight.settle(&mut source).await.expect("settled");
        assert!(source.0.is_empty(), "the second is acknowledged but the first is not: {:?}", source.0);
        let _ = first.send(Ok(()));
        in_flight.settle(&mut source).await.expect("settled");
        assert_eq!(source.0, vec![("in".into(), 0, 7), ("in".into(), 1, 9), ("in".into(), 0, 8)], "in order, each partition's last offset");
    }

    #[tokio::test]
    async fn past_the_limit_the_oldest_is_waited_for_and_a_failure_commits_nothing() {
        let mut source = Commits::default();
        let mut in_flight = InFlight::default();
        let mut senders = Vec::new();
        for offset in 0..=MAX_IN_FLIGHT as u64 {
            let (tx, acked) = ack();
            senders.push(tx);
            in_flight.push(&[read(0, offset)], vec![acked]);
        }
        let oldest = senders.remove(0);
        let waiting = tokio::spawn(async move {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            let _ = oldest.send(Ok(()));
        });
        in_flight.settle(&mut source).await.expect("settled");
        waiting.await.expect("sender");
        assert_eq!(source.0, vec![("in".into(), 0, 0)], "only the oldest, once acknowledged");

        let _ = senders.remove(0).send(Err(IngestError::Broker("delivery failed".into())));
        assert!(in_flight.settle_all(&mut source).await.is_err(), "a failed delivery is an error");
        assert_eq!(source.0.len(), 1, "and its batch is not committed");
    }
}
