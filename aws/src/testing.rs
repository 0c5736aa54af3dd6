//! In-memory implementations of the ports, for tests: a Kinesis fake with scripted faults
//! (what no emulator does: expired iterators, throttling on reads and on `PutRecords`, shards
//! that end after a split), a lease table and an object store. They follow the service
//! semantics the consumer relies on (sequence numbers increase per stream, a closed shard
//! ends with a null `NextShardIterator`, conditional lease writes), nothing more.

use crate::kinesis::{
    IteratorStart, KinesisError, KinesisPort, KinesisRecord, PutEntry, PutOutcome, RecordsPage,
    SequenceNumber, ShardInfo,
};
use crate::lease::{Checkpoint, Lease, LeaseChange, LeaseError, LeaseStore};
use crate::objects::{ObjectError, ObjectStore};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// What the next `GetRecords` call on a shard does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadFault {
    /// Answer normally.
    Pass,
    /// Fail with `ExpiredIteratorException`.
    Expire,
    /// Fail with `ProvisionedThroughputExceededException`.
    Throttle,
}

/// What the next `PutRecords` call does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PutFault {
    /// Accept every entry.
    Pass,
    /// Fail the whole call with `ProvisionedThroughputExceededException`.
    ThrottleCall,
    /// Fail the entries at these indexes of the call with
    /// `ProvisionedThroughputExceededException`, accept the others.
    FailEntries(Vec<usize>),
}

#[derive(Debug)]
struct FakeShard {
    info: ShardInfo,
    records: Vec<KinesisRecord>,
}

#[derive(Debug, Default)]
struct FakeStream {
    shards: Vec<FakeShard>,
    next_sequence: u128,
}

/// A call the fake received, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FakeCall {
    /// `GetShardIterator(shard, start)`.
    GetShardIterator {
        /// Shard.
        shard_id: String,
        /// Start.
        start: IteratorStart,
    },
    /// `GetRecords` on a shard, with the number of records returned (0 for a fault).
    GetRecords {
        /// Shard.
        shard_id: String,
        /// Records returned.
        returned: usize,
        /// The fault injected, if any.
        fault: Option<ReadFault>,
    },
    /// `PutRecords` with the partition keys of its entries.
    PutRecords {
        /// Stream.
        stream: String,
        /// Entries sent.
        entries: usize,
        /// Entries accepted.
        accepted: usize,
    },
}

/// A Kinesis fake (see the module docs).
#[derive(Debug, Default)]
pub struct FakeKinesis {
    streams: Mutex<HashMap<String, FakeStream>>,
    read_faults: Mutex<HashMap<String, VecDeque<ReadFault>>>,
    put_faults: Mutex<VecDeque<PutFault>>,
    calls: Mutex<Vec<FakeCall>>,
    page_size: AtomicUsize,
}

impl FakeKinesis {
    /// A fake with no stream; `GetRecords` pages hold at most 100 records.
    pub fn new() -> FakeKinesis {
        let f = FakeKinesis::default();
        f.page_size.store(100, Ordering::SeqCst);
        f
    }

    /// Sets the most records one `GetRecords` page returns (below any `Limit`).
    pub fn set_page_size(&self, n: usize) {
        self.page_size.store(n.max(1), Ordering::SeqCst);
    }

    /// Creates `stream` with `shards` open shards (`shardId-000000000000`, ...); sequence
    /// numbers start at `first_sequence` (pick 9 or 99 to cross a digit boundary).
    pub fn create_stream(&self, stream: &str, shards: usize, first_sequence: u128) {
        let mut s = FakeStream {
            shards: Vec::new(),
            next_sequence: first_sequence,
        };
        for i in 0..shards {
            s.shards.push(FakeShard {
                info: ShardInfo {
                    shard_id: format!("shardId-{i:012}"),
                    parent_shard_id: None,
                    adjacent_parent_shard_id: None,
                    ending_sequence_number: None,
                },
                records: Vec::new(),
            });
        }
        lock(&self.streams).insert(stream.to_string(), s);
    }

    /// Appends a record to a given shard; returns its sequence number.
    pub fn append(&self, stream: &str, shard_id: &str, partition_key: &str, data: &[u8]) -> String {
        let mut streams = lock(&self.streams);
        let Some(s) = streams.get_mut(stream) else {
            return String::new();
        };
        let seq = s.next_sequence;
        s.next_sequence += 1;
        if let Some(shard) = s.shards.iter_mut().find(|x| x.info.shard_id == shard_id) {
            shard.records.push(KinesisRecord {
                sequence_number: seq.to_string(),
                partition_key: partition_key.to_string(),
                data: data.to_vec(),
                approximate_arrival_micros: Some(i64::try_from(seq).unwrap_or(i64::MAX)),
            });
        }
        seq.to_string()
    }

    /// Closes `shard_id` (its last sequence number becomes its ending sequence number) and
    /// adds two open children whose parent it is; returns their ids. Records put afterwards
    /// go to the children by [`FakeKinesis::route`].
    pub fn split(&self, stream: &str, shard_id: &str) -> Vec<String> {
        let mut streams = lock(&self.streams);
        let Some(s) = streams.get_mut(stream) else {
            return Vec::new();
        };
        let ending = s.next_sequence.saturating_sub(1).to_string();
        // Next ids after the highest one (shards that aged out keep their ids taken).
        let n = s
            .shards
            .iter()
            .filter_map(|x| {
                x.info
                    .shard_id
                    .strip_prefix("shardId-")?
                    .parse::<usize>()
                    .ok()
            })
            .max()
            .map_or(0, |m| m + 1);
        if let Some(parent) = s.shards.iter_mut().find(|x| x.info.shard_id == shard_id) {
            parent.info.ending_sequence_number = Some(ending);
        }
        let mut ids = Vec::new();
        for n in n..n + 2 {
            let id = format!("shardId-{n:012}");
            s.shards.push(FakeShard {
                info: ShardInfo {
                    shard_id: id.clone(),
                    parent_shard_id: Some(shard_id.to_string()),
                    adjacent_parent_shard_id: None,
                    ending_sequence_number: None,
                },
                records: Vec::new(),
            });
            ids.push(id);
        }
        ids
    }

    /// Removes `shard_id` from the stream, as Kinesis does once a closed shard is older than
    /// the retention period: `ListShards` no longer lists it and `GetShardIterator` answers
    /// `ResourceNotFoundException`. Returns whether it was there.
    pub fn age_out(&self, stream: &str, shard_id: &str) -> bool {
        let mut streams = lock(&self.streams);
        let Some(s) = streams.get_mut(stream) else {
            return false;
        };
        let before = s.shards.len();
        s.shards.retain(|x| x.info.shard_id != shard_id);
        s.shards.len() != before
    }

    /// The open shard a partition key goes to: a stable hash of the key over the open shards
    /// in id order.
    pub fn route(&self, stream: &str, partition_key: &str) -> Option<String> {
        let streams = lock(&self.streams);
        let s = streams.get(stream)?;
        let open: Vec<&FakeShard> = s
            .shards
            .iter()
            .filter(|x| x.info.ending_sequence_number.is_none())
            .collect();
        if open.is_empty() {
            return None;
        }
        let h = aiops_core::stable_hash(&[partition_key.as_bytes()]);
        let i = usize::try_from(h % open.len() as u64).unwrap_or(0);
        open.get(i).map(|x| x.info.shard_id.clone())
    }

    /// Scripts the next `GetRecords` calls on a shard (consumed in order; then `Pass`).
    pub fn script_reads(&self, shard_id: &str, faults: Vec<ReadFault>) {
        lock(&self.read_faults)
            .entry(shard_id.to_string())
            .or_default()
            .extend(faults);
    }

    /// Scripts the next `PutRecords` calls (consumed in order; then `Pass`).
    pub fn script_puts(&self, faults: Vec<PutFault>) {
        lock(&self.put_faults).extend(faults);
    }

    /// Every call received, in order.
    pub fn calls(&self) -> Vec<FakeCall> {
        lock(&self.calls).clone()
    }

    /// The records of a shard (data and partition key), in order.
    pub fn records(&self, stream: &str, shard_id: &str) -> Vec<KinesisRecord> {
        lock(&self.streams)
            .get(stream)
            .and_then(|s| s.shards.iter().find(|x| x.info.shard_id == shard_id))
            .map(|x| x.records.clone())
            .unwrap_or_default()
    }

    fn position(shard: &FakeShard, start: &IteratorStart) -> Result<usize, KinesisError> {
        let index_of = |seq: &str| -> Result<usize, KinesisError> {
            let want = SequenceNumber::parse(seq)
                .ok_or_else(|| KinesisError::Other(format!("InvalidArgumentException: {seq}")))?;
            Ok(shard
                .records
                .iter()
                .position(|r| SequenceNumber::parse(&r.sequence_number).is_some_and(|s| s >= want))
                .unwrap_or(shard.records.len()))
        };
        Ok(match start {
            IteratorStart::TrimHorizon => 0,
            IteratorStart::Latest => shard.records.len(),
            IteratorStart::AtSequenceNumber(s) => index_of(s)?,
            IteratorStart::AfterSequenceNumber(s) => {
                let i = index_of(s)?;
                let exact = shard.records.get(i).is_some_and(|r| {
                    SequenceNumber::parse(&r.sequence_number) == SequenceNumber::parse(s)
                });
                if exact { i + 1 } else { i }
            }
            IteratorStart::AtTimestamp(t) => shard
                .records
                .iter()
                .position(|r| r.approximate_arrival_micros.unwrap_or(0) >= *t)
                .unwrap_or(shard.records.len()),
        })
    }
}

impl KinesisPort for FakeKinesis {
    async fn list_shards(&self, stream: &str) -> Result<Vec<ShardInfo>, KinesisError> {
        lock(&self.streams)
            .get(stream)
            .map(|s| s.shards.iter().map(|x| x.info.clone()).collect())
            .ok_or_else(|| KinesisError::NotFound(format!("stream {stream}")))
    }

    async fn get_shard_iterator(
        &self,
        stream: &str,
        shard_id: &str,
        start: &IteratorStart,
    ) -> Result<String, KinesisError> {
        lock(&self.calls).push(FakeCall::GetShardIterator {
            shard_id: shard_id.to_string(),
            start: start.clone(),
        });
        let streams = lock(&self.streams);
        let shard = streams
            .get(stream)
            .and_then(|s| s.shards.iter().find(|x| x.info.shard_id == shard_id))
            .ok_or_else(|| KinesisError::NotFound(format!("shard {shard_id}")))?;
        let pos = FakeKinesis::position(shard, start)?;
        Ok(format!("{stream}|{shard_id}|{pos}"))
    }

    async fn get_records(&self, iterator: &str, limit: i32) -> Result<RecordsPage, KinesisError> {
        let mut parts = iterator.split('|');
        let (Some(stream), Some(shard_id), Some(pos)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(KinesisError::Other(
                "InvalidArgumentException: bad iterator".into(),
            ));
        };
        let pos: usize = pos
            .parse()
            .map_err(|_| KinesisError::Other("InvalidArgumentException: bad iterator".into()))?;
        let fault = lock(&self.read_faults)
            .get_mut(shard_id)
            .and_then(|q| q.pop_front())
            .unwrap_or(ReadFault::Pass);
        if fault != ReadFault::Pass {
            lock(&self.calls).push(FakeCall::GetRecords {
                shard_id: shard_id.to_string(),
                returned: 0,
                fault: Some(fault),
            });
            return Err(match fault {
                ReadFault::Expire => KinesisError::ExpiredIterator("Iterator expired".into()),
                _ => KinesisError::Throttled(
                    "ProvisionedThroughputExceededException: rate exceeded".into(),
                ),
            });
        }
        let streams = lock(&self.streams);
        let shard = streams
            .get(stream)
            .and_then(|s| s.shards.iter().find(|x| x.info.shard_id == shard_id))
            .ok_or_else(|| KinesisError::NotFound(format!("shard {shard_id}")))?;
        let n = usize::try_from(limit.max(1))
            .unwrap_or(1)
            .min(self.page_size.load(Ordering::SeqCst));
        let end = (pos + n).min(shard.records.len());
        let records: Vec<KinesisRecord> = shard.records.get(pos..end).unwrap_or_default().to_vec();
        let at_end = end >= shard.records.len();
        let closed = shard.info.ending_sequence_number.is_some();
        let page = RecordsPage {
            records,
            next_iterator: if at_end && closed {
                None
            } else {
                Some(format!("{stream}|{shard_id}|{end}"))
            },
            millis_behind_latest: Some(if at_end { 0 } else { 1000 }),
        };
        drop(streams);
        lock(&self.calls).push(FakeCall::GetRecords {
            shard_id: shard_id.to_string(),
            returned: page.records.len(),
            fault: None,
        });
        Ok(page)
    }

    async fn put_records(
        &self,
        stream: &str,
        entries: &[PutEntry],
    ) -> Result<Vec<PutOutcome>, KinesisError> {
        let fault = lock(&self.put_faults).pop_front().unwrap_or(PutFault::Pass);
        if fault == PutFault::ThrottleCall {
            lock(&self.calls).push(FakeCall::PutRecords {
                stream: stream.to_string(),
                entries: entries.len(),
                accepted: 0,
            });
            return Err(KinesisError::Throttled(
                "ProvisionedThroughputExceededException: rate exceeded".into(),
            ));
        }
        let failing: Vec<usize> = match &fault {
            PutFault::FailEntries(v) => v.clone(),
            _ => Vec::new(),
        };
        let mut out = Vec::with_capacity(entries.len());
        for (i, e) in entries.iter().enumerate() {
            if failing.contains(&i) {
                out.push(PutOutcome::Failed {
                    error_code: "ProvisionedThroughputExceededException".into(),
                    error_message: "Rate exceeded for shard".into(),
                });
                continue;
            }
            let shard = self
                .route(stream, &e.partition_key)
                .ok_or_else(|| KinesisError::NotFound(format!("stream {stream}")))?;
            let seq = self.append(stream, &shard, &e.partition_key, &e.data);
            out.push(PutOutcome::Accepted {
                sequence_number: seq,
                shard_id: shard,
            });
        }
        let accepted = out
            .iter()
            .filter(|o| matches!(o, PutOutcome::Accepted { .. }))
            .count();
        lock(&self.calls).push(FakeCall::PutRecords {
            stream: stream.to_string(),
            entries: entries.len(),
            accepted,
        });
        Ok(out)
    }
}

/// An in-memory lease table with the same conditional semantics as [`crate::lease::DynamoLeaseStore`].
#[derive(Debug, Default)]
pub struct MemoryLeaseStore {
    leases: Mutex<BTreeMap<String, Lease>>,
    fail_next: AtomicUsize,
}

impl MemoryLeaseStore {
    /// An empty table.
    pub fn new() -> MemoryLeaseStore {
        MemoryLeaseStore::default()
    }

    /// Makes the next `n` calls fail with [`LeaseError::Backend`].
    pub fn fail_next(&self, n: usize) {
        self.fail_next.store(n, Ordering::SeqCst);
    }

    fn check_fail(&self) -> Result<(), LeaseError> {
        let left = self.fail_next.load(Ordering::SeqCst);
        if left > 0 {
            self.fail_next.store(left - 1, Ordering::SeqCst);
            return Err(LeaseError::Backend("injected failure".into()));
        }
        Ok(())
    }

    /// A copy of every lease, by key.
    pub fn snapshot(&self) -> BTreeMap<String, Lease> {
        lock(&self.leases).clone()
    }
}

impl LeaseStore for MemoryLeaseStore {
    async fn list(&self, prefix: &str) -> Result<Vec<Lease>, LeaseError> {
        self.check_fail()?;
        Ok(lock(&self.leases)
            .values()
            .filter(|l| l.key.starts_with(prefix))
            .cloned()
            .collect())
    }

    async fn get(&self, key: &str) -> Result<Option<Lease>, LeaseError> {
        self.check_fail()?;
        Ok(lock(&self.leases).get(key).cloned())
    }

    async fn create(&self, lease: &Lease) -> Result<bool, LeaseError> {
        self.check_fail()?;
        let mut leases = lock(&self.leases);
        if leases.contains_key(&lease.key) {
            return Ok(false);
        }
        leases.insert(lease.key.clone(), lease.clone());
        Ok(true)
    }

    async fn update(
        &self,
        key: &str,
        expected_counter: u64,
        expected_owner: Option<&str>,
        change: &LeaseChange,
        now_millis: i64,
        _expires_millis: i64,
    ) -> Result<bool, LeaseError> {
        self.check_fail()?;
        let mut leases = lock(&self.leases);
        let Some(l) = leases.get_mut(key) else {
            return Ok(false);
        };
        if l.counter != expected_counter || l.owner.as_deref() != expected_owner {
            return Ok(false);
        }
        l.counter += 1;
        match change {
            LeaseChange::Take { owner } => {
                l.owner = Some(owner.clone());
                l.owner_switches_since_checkpoint += 1;
                l.last_renewal_millis = Some(now_millis);
            }
            LeaseChange::Renew => l.last_renewal_millis = Some(now_millis),
            LeaseChange::Checkpoint(cp) => {
                l.checkpoint = cp.clone();
                l.owner_switches_since_checkpoint = 0;
                l.last_renewal_millis = Some(now_millis);
            }
            LeaseChange::Release => l.owner = None,
        }
        Ok(true)
    }

    async fn delete(&self, key: &str, expected_counter: u64) -> Result<bool, LeaseError> {
        self.check_fail()?;
        let mut leases = lock(&self.leases);
        match leases.get(key) {
            Some(l) if l.counter == expected_counter => {
                leases.remove(key);
                Ok(true)
            }
            _ => Ok(false),
        }
    }
}

/// An in-memory object store; can fail the next writes.
#[derive(Debug, Default)]
pub struct MemoryObjectStore {
    objects: Mutex<BTreeMap<String, Vec<u8>>>,
    fail_next: AtomicUsize,
}

impl MemoryObjectStore {
    /// An empty store.
    pub fn new() -> MemoryObjectStore {
        MemoryObjectStore::default()
    }

    /// Makes the next `n` writes fail.
    pub fn fail_next(&self, n: usize) {
        self.fail_next.store(n, Ordering::SeqCst);
    }

    /// A copy of every object, by key.
    pub fn objects(&self) -> BTreeMap<String, Vec<u8>> {
        lock(&self.objects).clone()
    }
}

impl ObjectStore for MemoryObjectStore {
    async fn put(&self, key: &str, body: Vec<u8>, _content_type: &str) -> Result<(), ObjectError> {
        let left = self.fail_next.load(Ordering::SeqCst);
        if left > 0 {
            self.fail_next.store(left - 1, Ordering::SeqCst);
            return Err(ObjectError::Write {
                bucket: "memory".into(),
                key: key.to_string(),
                reason: "injected failure".into(),
            });
        }
        lock(&self.objects).insert(key.to_string(), body);
        Ok(())
    }

    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, ObjectError> {
        Ok(lock(&self.objects).get(key).cloned())
    }
}

impl MemoryObjectStore {
    /// Replaces (or adds) object `key`, as another writer would.
    pub fn insert(&self, key: &str, body: Vec<u8>) {
        lock(&self.objects).insert(key.to_string(), body);
    }
}

/// Whether a lease is finished (`SHARD_END`).
pub fn is_shard_end(lease: &Lease) -> bool {
    lease.checkpoint == Checkpoint::ShardEnd
}
