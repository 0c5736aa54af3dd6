//! Where a stage hands what it produced: ingest its events, detect its findings. In the scaled
//! deployment profile that is the next Kinesis stream ([`ToStream`]); in the single profile
//! (one process, the raw stream only) it is the next stage's processor in the same process
//! ([`ToProcessor`]), called inline, so a batch counts as processed only once the next stages
//! processed what it produced, as a `PutRecords` that returned counts as delivered.

use aiops_aws::consumer::{ConsumedRecord, ProcessError, ShardProcessor};
use aiops_aws::kinesis::{KinesisPort, PutEntry};
use aiops_aws::producer::Producer;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::sync::Mutex;

/// Hands a stage's products (one [`PutEntry`] each: the JSON record and its partition key) to
/// the next stage.
pub trait Forward: Send + Sync + 'static {
    /// Delivers `entries` (in order); returns once the next stage has them durably (a stream)
    /// or has processed them (a processor).
    ///
    /// # Errors
    /// [`ProcessError`] when they could not be delivered: the batch is not processed, the
    /// shard stops without checkpointing and its records are read again.
    fn forward(
        &self,
        entries: Vec<PutEntry>,
    ) -> impl Future<Output = Result<(), ProcessError>> + Send;
}

/// The next stage is a Kinesis stream: `PutRecords` with retries of the failed entries
/// ([`Producer::put_all`]).
pub struct ToStream<K> {
    /// The producer.
    pub producer: Producer<K>,
    /// The stream's name.
    pub stream: String,
}

impl<K: KinesisPort> Forward for ToStream<K> {
    async fn forward(&self, entries: Vec<PutEntry>) -> Result<(), ProcessError> {
        if entries.is_empty() {
            return Ok(());
        }
        self.producer
            .put_all(&self.stream, &entries)
            .await
            .map_err(|e| ProcessError(e.to_string()))
    }
}

/// The next stage is a processor of this process, shared by every shard of the stream read
/// (one detect engine sees every event, as one series may arrive on any raw shard): the
/// entries become its records (stream `in-process:<label>`, shard `in-process`, sequence
/// numbers counting from 1) and it processes them under its lock.
pub struct ToProcessor<P> {
    next: Arc<Mutex<P>>,
    label: String,
    sequence: AtomicU64,
}

impl<P: ShardProcessor> ToProcessor<P> {
    /// Forwarding to `next`; `label` names it in its records' stream (`events`, `decisions`).
    pub fn new(next: Arc<Mutex<P>>, label: &str) -> ToProcessor<P> {
        ToProcessor {
            next,
            label: format!("in-process:{label}"),
            sequence: AtomicU64::new(0),
        }
    }

    /// The processor forwarded to (its owner flushes it).
    pub fn next(&self) -> &Arc<Mutex<P>> {
        &self.next
    }
}

impl<P: ShardProcessor> Forward for ToProcessor<P> {
    async fn forward(&self, entries: Vec<PutEntry>) -> Result<(), ProcessError> {
        if entries.is_empty() {
            return Ok(());
        }
        let records = entries
            .into_iter()
            .map(|e| ConsumedRecord {
                stream: self.label.clone(),
                shard_id: "in-process".into(),
                sequence_number: (self.sequence.fetch_add(1, Ordering::Relaxed) + 1).to_string(),
                sub_sequence_number: None,
                partition_key: e.partition_key,
                data: e.data,
                approximate_arrival_micros: None,
            })
            .collect();
        self.next.lock().await.process(records).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Records what it was given.
    #[derive(Default)]
    struct Seen(Vec<(String, String, String, Vec<u8>)>, usize);

    impl ShardProcessor for Seen {
        async fn process(&mut self, records: Vec<ConsumedRecord>) -> Result<(), ProcessError> {
            for r in records {
                self.0
                    .push((r.stream, r.sequence_number, r.partition_key, r.data));
            }
            Ok(())
        }
        fn flush_due(&self) -> bool {
            false
        }
        async fn flush(&mut self) -> Result<(), ProcessError> {
            self.1 += 1;
            Ok(())
        }
    }

    #[tokio::test]
    async fn entries_become_the_next_processors_records_in_order() {
        let next = Arc::new(Mutex::new(Seen::default()));
        let f = ToProcessor::new(next.clone(), "events");
        let entry = |k: &str, d: &str| PutEntry {
            partition_key: k.into(),
            data: d.as_bytes().to_vec(),
        };
        f.forward(vec![entry("a", "{1}"), entry("b", "{2}")])
            .await
            .unwrap();
        f.forward(vec![]).await.unwrap();
        f.forward(vec![entry("a", "{3}")]).await.unwrap();
        let seen = &next.lock().await.0;
        let got: Vec<(&str, &str, &str, &[u8])> = seen
            .iter()
            .map(|(s, n, k, d)| (s.as_str(), n.as_str(), k.as_str(), d.as_slice()))
            .collect();
        assert_eq!(
            got,
            vec![
                ("in-process:events", "1", "a", b"{1}".as_slice()),
                ("in-process:events", "2", "b", b"{2}".as_slice()),
                ("in-process:events", "3", "a", b"{3}".as_slice()),
            ]
        );
    }
}
