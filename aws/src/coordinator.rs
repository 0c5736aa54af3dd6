//! The lease coordinator of one worker: creates leases for new shards, takes free and expired
//! leases, balances shards evenly across the workers of a stage (stealing one lease at a time
//! from the most loaded worker), renews what it holds, checkpoints and releases.
//!
//! The rules follow the Kinesis Client Library's `DynamoDBLeaseTaker` and
//! `DynamoDBLeaseRenewer` (<https://github.com/awslabs/amazon-kinesis-client>):
//! - a lease is *expired* for this worker when it has no owner, or when its counter has not
//!   changed for `failover_ms` since this worker first saw that counter (clock skew between
//!   workers does not matter);
//! - the target per worker is `ceil(active leases / workers)`, where workers are the owners
//!   of unexpired leases plus this one, and active leases are those not at `SHARD_END`;
//! - a worker below target takes expired leases first, and otherwise steals one lease per
//!   round from the most loaded worker when that one holds more than the target;
//! - a lease owned by this worker's id but not held (a restart with the same id) is taken
//!   back at once;
//! - a held lease whose renewal has not succeeded for `failover_ms` is considered lost
//!   locally: its shard stops without checkpointing, because another worker may own it.
//!
//! Parents, children and cleanup, as the KCL's lease lifecycle describes them
//! (`DISCOVERY -> CREATION -> PROCESSING -> SHARD_END -> DELETION`, "Lease deletion will not
//! occur until after its child lease(s) enter PROCESSING": `docs/lease-lifecycle.md` and
//! `LeaseCleanupManager` in the KCL repository):
//! - a child shard starts once every parent is finished ([`parent_finished`]): the parent's
//!   lease is at `SHARD_END`, or the parent shard is absent from a non-empty `ListShards`
//!   answer (it aged out of the stream's retention period: its records are gone, whatever its
//!   lease says; ListShards returns the shards within the retention period, Amazon Kinesis
//!   Data Streams API Reference, `ListShards`);
//! - a child whose own checkpoint moved past its initial position has started, so it does not
//!   wait for its parents again when another worker takes it over (their leases may be gone);
//! - [`LeaseCoordinator::clean_up`] deletes a lease ([`removable_leases`]) once every child
//!   shard it is known to have (from the listing and from the lease table) has a lease that
//!   *started* (checkpoint a sequence number or `SHARD_END`; a child still at `TRIM_HORIZON` or
//!   `LATEST` has not, as in the KCL) and either the lease is at `SHARD_END` with its last write
//!   at least `finished_retention_ms` ago, or its shard aged out of the stream;
//! - a closed shard absent from the lease table whose child already started is not given a
//!   lease again by [`LeaseCoordinator::sync_shards`] (it was finished and cleaned up; a new
//!   lease would read it again from `TRIM_HORIZON`).

use crate::kinesis::ShardInfo;
use crate::lease::{Checkpoint, Lease, LeaseChange, LeaseError, LeaseStore};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::time::{Duration, Instant};

/// Lease timing (`[aws.leases]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LeaseConfig {
    /// A lease whose counter does not change for this long is expired, milliseconds.
    /// Default 10,000 (the KCL's `failoverTimeMillis`).
    pub failover_ms: u64,
    /// How often held leases are renewed, milliseconds; must be below `failover_ms / 2`.
    /// Default 3,000.
    pub renew_interval_ms: u64,
    /// How often the lease table is read to take leases, milliseconds. Default 5,000.
    pub take_interval_ms: u64,
    /// How often the stream's shards are listed to create leases for new shards,
    /// milliseconds. Default 60,000 (also after any shard ends).
    pub shard_sync_interval_ms: u64,
    /// Most leases one worker holds (bounds its memory and connections). Default 256.
    pub max_leases_per_worker: usize,
    /// How long a finished lease (`SHARD_END`) stays in the table after its last write before
    /// [`LeaseCoordinator::clean_up`] may delete it (once every child shard started),
    /// milliseconds. Default 3,600,000 (1 hour); 0 deletes as soon as the children started.
    pub finished_retention_ms: u64,
}

impl Default for LeaseConfig {
    fn default() -> Self {
        LeaseConfig {
            failover_ms: 10_000,
            renew_interval_ms: 3_000,
            take_interval_ms: 5_000,
            shard_sync_interval_ms: 60_000,
            max_leases_per_worker: 256,
            finished_retention_ms: 3_600_000,
        }
    }
}

impl LeaseConfig {
    /// Checks the ranges and that renewals come often enough.
    ///
    /// # Errors
    /// A message naming the field.
    pub fn validate(&self) -> Result<(), String> {
        if self.failover_ms < 1000 || self.failover_ms > 600_000 {
            return Err("failover_ms: must be between 1000 and 600000".into());
        }
        if self.renew_interval_ms == 0 || self.renew_interval_ms * 2 >= self.failover_ms {
            return Err(format!(
                "renew_interval_ms: {} must be at least 1 and below failover_ms / 2 ({})",
                self.renew_interval_ms,
                self.failover_ms / 2
            ));
        }
        if self.take_interval_ms == 0 || self.take_interval_ms > 600_000 {
            return Err("take_interval_ms: must be between 1 and 600000".into());
        }
        if self.shard_sync_interval_ms == 0 {
            return Err("shard_sync_interval_ms: must be at least 1".into());
        }
        if self.max_leases_per_worker == 0 || self.max_leases_per_worker > 10_000 {
            return Err("max_leases_per_worker: must be between 1 and 10000".into());
        }
        if self.finished_retention_ms > 30 * 86_400_000 {
            return Err("finished_retention_ms: must be at most 2592000000 (30 days)".into());
        }
        Ok(())
    }
}

/// Where a shard without a checkpoint starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum InitialPosition {
    /// The oldest record still in the stream (default: nothing already in the stream is
    /// missed).
    #[default]
    TrimHorizon,
    /// Records put after the worker first reads the shard.
    Latest,
}

/// A lease this worker holds, as handed to a shard consumer.
#[derive(Debug, Clone)]
pub struct LeaseHandle {
    /// Lease key.
    pub key: String,
    /// Shard id.
    pub shard_id: String,
    /// Checkpoint when taken.
    pub checkpoint: Checkpoint,
    /// Parent shard ids.
    pub parent_shard_ids: Vec<String>,
    lost: Arc<AtomicBool>,
}

impl LeaseHandle {
    /// Whether the coordinator lost this lease (stolen, expired, or renewals failing).
    pub fn is_lost(&self) -> bool {
        self.lost.load(Ordering::SeqCst)
    }
}

struct Held {
    counter: u64,
    last_renewed: Instant,
    handle: LeaseHandle,
}

struct Observed {
    counter: u64,
    owner: Option<String>,
    since: Instant,
}

/// The outcome of a checkpoint write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckpointResult {
    /// Written.
    Written,
    /// The lease is no longer ours (condition failed, or not held): stop the shard.
    LeaseLost,
}

/// The lease coordinator of one worker for one stage's stream.
pub struct LeaseCoordinator<S> {
    store: Arc<S>,
    worker_id: String,
    stage: String,
    stream: String,
    config: LeaseConfig,
    held: tokio::sync::Mutex<HashMap<String, Held>>,
    observed: std::sync::Mutex<HashMap<String, Observed>>,
}

/// Whether a lease's shard has started processing: its checkpoint moved past the initial
/// position (a sequence number, or `SHARD_END`).
pub fn has_started(checkpoint: &Checkpoint) -> bool {
    matches!(
        checkpoint,
        Checkpoint::Sequence { .. } | Checkpoint::ShardEnd
    )
}

/// Whether the parent shard `parent_shard_id` counts as finished for its children: its lease
/// (`parent`, `None` when it has none) is at `SHARD_END`, or `listed` (the shard ids of the
/// last `ListShards` answer) is non-empty and lacks it (the shard aged out of the stream).
/// An empty `listed` means "not known yet": only a `SHARD_END` lease counts then.
pub fn parent_finished(
    parent_shard_id: &str,
    parent: Option<&Lease>,
    listed: &HashSet<String>,
) -> bool {
    parent.is_some_and(|l| l.checkpoint == Checkpoint::ShardEnd)
        || (!listed.is_empty() && !listed.contains(parent_shard_id))
}

/// Why [`removable_leases`] selected a lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Removal {
    /// At `SHARD_END` for at least the retention period, every child started.
    Finished,
    /// Its shard is absent from the listing (aged out of the stream), every child started.
    AgedOut,
}

/// The leases of one stage's stream that may be deleted (see the module docs), in key order.
/// `leases`: the stream's leases as read; `shards`: the last `ListShards` answer (an empty
/// answer selects nothing); `now_millis`: milliseconds since the Unix epoch, UTC;
/// `retention_ms`: the least age of a finished lease's last write (`lastRenewalMillis`; a lease
/// without one counts as old enough). A lease with no known child is never selected.
pub fn removable_leases<'a>(
    leases: &'a [Lease],
    shards: &[ShardInfo],
    now_millis: i64,
    retention_ms: u64,
) -> Vec<(&'a Lease, Removal)> {
    if shards.is_empty() {
        return Vec::new();
    }
    let listed: HashSet<&str> = shards.iter().map(|s| s.shard_id.as_str()).collect();
    let by_shard: HashMap<&str, &Lease> = leases.iter().map(|l| (l.shard_id.as_str(), l)).collect();
    let retention = i64::try_from(retention_ms).unwrap_or(i64::MAX);
    let mut out = Vec::new();
    let mut sorted: Vec<&Lease> = leases.iter().collect();
    sorted.sort_by(|a, b| a.key.cmp(&b.key));
    for lease in sorted {
        let id = lease.shard_id.as_str();
        let mut children: HashSet<&str> = shards
            .iter()
            .filter(|s| {
                s.parent_shard_id.as_deref() == Some(id)
                    || s.adjacent_parent_shard_id.as_deref() == Some(id)
            })
            .map(|s| s.shard_id.as_str())
            .collect();
        children.extend(
            leases
                .iter()
                .filter(|l| l.parent_shard_ids.iter().any(|p| p == id))
                .map(|l| l.shard_id.as_str()),
        );
        let children_started = !children.is_empty()
            && children
                .iter()
                .all(|c| by_shard.get(c).is_some_and(|l| has_started(&l.checkpoint)));
        if !children_started {
            continue;
        }
        if !listed.contains(id) {
            out.push((lease, Removal::AgedOut));
        } else if lease.checkpoint == Checkpoint::ShardEnd
            && lease
                .last_renewal_millis
                .is_none_or(|t| now_millis.saturating_sub(t) >= retention)
        {
            out.push((lease, Removal::Finished));
        }
    }
    out
}

fn wall_millis() -> i64 {
    aiops_core::time::now_micros() / 1000
}

impl<S: LeaseStore> LeaseCoordinator<S> {
    /// A coordinator for `worker_id` on `stage`'s leases of `stream`.
    pub fn new(
        store: Arc<S>,
        worker_id: &str,
        stage: &str,
        stream: &str,
        config: LeaseConfig,
    ) -> LeaseCoordinator<S> {
        LeaseCoordinator {
            store,
            worker_id: worker_id.to_string(),
            stage: stage.to_string(),
            stream: stream.to_string(),
            config,
            held: tokio::sync::Mutex::new(HashMap::new()),
            observed: std::sync::Mutex::new(HashMap::new()),
        }
    }

    /// This worker's id.
    pub fn worker_id(&self) -> &str {
        &self.worker_id
    }

    /// The store.
    pub fn store(&self) -> &Arc<S> {
        &self.store
    }

    /// The timing configuration.
    pub fn config(&self) -> &LeaseConfig {
        &self.config
    }

    fn expires_millis(&self) -> i64 {
        wall_millis().saturating_add(i64::try_from(self.config.failover_ms).unwrap_or(i64::MAX))
    }

    /// Creates a lease for every listed shard that has none. Shards start at `initial`,
    /// except that with [`InitialPosition::Latest`] a closed shard starts at `SHARD_END`
    /// (nothing new will arrive in it) and a shard whose parent is listed starts at
    /// `TRIM_HORIZON` (it continues its parent). Returns the number created.
    ///
    /// # Errors
    /// [`LeaseError`] when the store fails.
    pub async fn sync_shards(
        &self,
        shards: &[ShardInfo],
        initial: InitialPosition,
    ) -> Result<usize, LeaseError> {
        let existing: HashMap<String, Lease> = self
            .store
            .list(&Lease::prefix_of(&self.stage, &self.stream))
            .await?
            .into_iter()
            .map(|l| (l.shard_id.clone(), l))
            .collect();
        let listed: HashSet<&str> = shards.iter().map(|s| s.shard_id.as_str()).collect();
        let mut created = 0;
        for shard in shards {
            if existing.contains_key(&shard.shard_id) {
                continue;
            }
            let child_started = shard.ending_sequence_number.is_some()
                && shards.iter().any(|c| {
                    c.parents().contains(&shard.shard_id)
                        && existing
                            .get(&c.shard_id)
                            .is_some_and(|l| has_started(&l.checkpoint))
                });
            if child_started {
                // Finished and cleaned up: its child could not have started otherwise.
                continue;
            }
            let parents = shard.parents();
            let checkpoint = match initial {
                InitialPosition::TrimHorizon => Checkpoint::TrimHorizon,
                InitialPosition::Latest if shard.ending_sequence_number.is_some() => {
                    Checkpoint::ShardEnd
                }
                InitialPosition::Latest if parents.iter().any(|p| listed.contains(p.as_str())) => {
                    Checkpoint::TrimHorizon
                }
                InitialPosition::Latest => Checkpoint::Latest,
            };
            let lease = Lease {
                key: Lease::key_of(&self.stage, &self.stream, &shard.shard_id),
                stage: self.stage.clone(),
                stream: self.stream.clone(),
                shard_id: shard.shard_id.clone(),
                owner: None,
                counter: 0,
                checkpoint,
                owner_switches_since_checkpoint: 0,
                parent_shard_ids: parents,
                last_renewal_millis: None,
            };
            if self.store.create(&lease).await? {
                created += 1;
                tracing::info!(lease = %lease.key, "lease created");
            }
        }
        Ok(created)
    }

    /// Deletes the leases [`removable_leases`] selects among this stage's leases of the stream,
    /// given the last `ListShards` answer `shards` and the time `now_millis` (milliseconds
    /// since the Unix epoch, UTC). Each delete is conditional on the counter read, so a lease
    /// written meanwhile stays. Returns the keys deleted.
    ///
    /// # Errors
    /// [`LeaseError`] when the store fails (leases deleted before the failure stay deleted).
    pub async fn clean_up(
        &self,
        shards: &[ShardInfo],
        now_millis: i64,
    ) -> Result<Vec<String>, LeaseError> {
        let leases = self
            .store
            .list(&Lease::prefix_of(&self.stage, &self.stream))
            .await?;
        let mut deleted = Vec::new();
        for (lease, why) in removable_leases(
            &leases,
            shards,
            now_millis,
            self.config.finished_retention_ms,
        ) {
            if self.store.delete(&lease.key, lease.counter).await? {
                tracing::info!(lease = %lease.key, reason = ?why, "lease removed");
                deleted.push(lease.key.clone());
            }
        }
        Ok(deleted)
    }

    /// Reads the lease table and takes leases as the module docs describe. Returns handles
    /// for the leases taken in this round.
    ///
    /// # Errors
    /// [`LeaseError`] when the store fails.
    pub async fn take(&self) -> Result<Vec<LeaseHandle>, LeaseError> {
        let leases = self
            .store
            .list(&Lease::prefix_of(&self.stage, &self.stream))
            .await?;
        let now = Instant::now();
        let failover = Duration::from_millis(self.config.failover_ms);
        let held_keys: HashSet<String> = self.held.lock().await.keys().cloned().collect();

        // Observe counters and decide expiry.
        let mut expired: Vec<&Lease> = Vec::new();
        let mut own_orphans: Vec<&Lease> = Vec::new();
        let mut per_owner: BTreeMap<String, Vec<&Lease>> = BTreeMap::new();
        let mut active = 0usize;
        {
            let mut observed = self
                .observed
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let present: HashSet<&str> = leases.iter().map(|l| l.key.as_str()).collect();
            observed.retain(|k, _| present.contains(k.as_str()));
            for lease in &leases {
                if lease.checkpoint == Checkpoint::ShardEnd {
                    continue;
                }
                active += 1;
                if held_keys.contains(&lease.key) {
                    per_owner
                        .entry(self.worker_id.clone())
                        .or_default()
                        .push(lease);
                    continue;
                }
                let Some(owner) = &lease.owner else {
                    expired.push(lease);
                    continue;
                };
                if owner == &self.worker_id {
                    own_orphans.push(lease);
                    continue;
                }
                let entry = observed.entry(lease.key.clone()).or_insert(Observed {
                    counter: lease.counter,
                    owner: lease.owner.clone(),
                    since: now,
                });
                if entry.counter != lease.counter || entry.owner != lease.owner {
                    *entry = Observed {
                        counter: lease.counter,
                        owner: lease.owner.clone(),
                        since: now,
                    };
                }
                if now.duration_since(entry.since) > failover {
                    expired.push(lease);
                } else {
                    per_owner.entry(owner.clone()).or_default().push(lease);
                }
            }
        }

        let mut taken = Vec::new();
        // A restart with the same worker id: take our own leases back at once.
        for lease in own_orphans {
            if let Some(h) = self.try_take(lease).await? {
                taken.push(h);
            }
        }
        let workers = per_owner.len() + usize::from(!per_owner.contains_key(&self.worker_id));
        let target = active
            .div_ceil(workers.max(1))
            .min(self.config.max_leases_per_worker);
        let mine = self.held.lock().await.len();
        let mut need = target.saturating_sub(mine);
        if need == 0 {
            return Ok(taken);
        }
        // Expired leases first, shards whose parents are finished before their children
        // (parents have lower shard ids in practice; sorting by key keeps it deterministic).
        expired.sort_by(|a, b| a.key.cmp(&b.key));
        for lease in expired {
            if need == 0 {
                break;
            }
            if let Some(h) = self.try_take(lease).await? {
                taken.push(h);
                need -= 1;
            }
        }
        if need > 0 && taken.is_empty() {
            // Steal one lease from the most loaded other worker, if it is above target.
            let victim = per_owner
                .iter()
                .filter(|(o, _)| *o != &self.worker_id)
                .max_by(|a, b| a.1.len().cmp(&b.1.len()).then_with(|| b.0.cmp(a.0)));
            if let Some((owner, leases)) = victim
                && leases.len() > target
                && let Some(lease) = leases.iter().max_by(|a, b| a.key.cmp(&b.key))
            {
                tracing::info!(lease = %lease.key, from = %owner, "stealing a lease to balance");
                if let Some(h) = self.try_take(lease).await? {
                    taken.push(h);
                }
            }
        }
        Ok(taken)
    }

    async fn try_take(&self, lease: &Lease) -> Result<Option<LeaseHandle>, LeaseError> {
        let ok = self
            .store
            .update(
                &lease.key,
                lease.counter,
                lease.owner.as_deref(),
                &LeaseChange::Take {
                    owner: self.worker_id.clone(),
                },
                wall_millis(),
                self.expires_millis(),
            )
            .await?;
        if !ok {
            return Ok(None);
        }
        let handle = LeaseHandle {
            key: lease.key.clone(),
            shard_id: lease.shard_id.clone(),
            checkpoint: lease.checkpoint.clone(),
            parent_shard_ids: lease.parent_shard_ids.clone(),
            lost: Arc::new(AtomicBool::new(false)),
        };
        self.held.lock().await.insert(
            lease.key.clone(),
            Held {
                counter: lease.counter + 1,
                last_renewed: Instant::now(),
                handle: handle.clone(),
            },
        );
        tracing::info!(lease = %lease.key, previous_owner = lease.owner.as_deref().unwrap_or("-"), checkpoint = lease.checkpoint.as_attribute(), "lease taken");
        Ok(Some(handle))
    }

    /// Renews every held lease. A lease whose condition fails is lost (marked, dropped); a
    /// store error leaves it held, and it is lost locally once `failover_ms` passed since
    /// its last successful renewal. Returns the keys lost in this round.
    pub async fn renew_all(&self) -> Vec<String> {
        let mut held = self.held.lock().await;
        let mut lost = Vec::new();
        let failover = Duration::from_millis(self.config.failover_ms);
        for (key, h) in held.iter_mut() {
            let result = self
                .store
                .update(
                    key,
                    h.counter,
                    Some(&self.worker_id),
                    &LeaseChange::Renew,
                    wall_millis(),
                    self.expires_millis(),
                )
                .await;
            match result {
                Ok(true) => {
                    h.counter += 1;
                    h.last_renewed = Instant::now();
                }
                Ok(false) => lost.push(key.clone()),
                Err(e) => {
                    tracing::warn!(lease = %key, error = %e, "lease renewal failed");
                    if h.last_renewed.elapsed() >= failover {
                        lost.push(key.clone());
                    }
                }
            }
        }
        for key in &lost {
            if let Some(h) = held.remove(key) {
                h.handle.lost.store(true, Ordering::SeqCst);
                tracing::warn!(lease = %key, "lease lost");
            }
        }
        lost
    }

    /// Whether `key` is held and was renewed within `failover_ms` (safe to process and to
    /// checkpoint).
    pub async fn is_valid(&self, key: &str) -> bool {
        let failover = Duration::from_millis(self.config.failover_ms);
        self.held
            .lock()
            .await
            .get(key)
            .is_some_and(|h| !h.handle.is_lost() && h.last_renewed.elapsed() < failover)
    }

    /// Handles of the leases held (with the checkpoint last written), sorted by key.
    pub async fn handles(&self) -> Vec<LeaseHandle> {
        let mut out: Vec<LeaseHandle> = self
            .held
            .lock()
            .await
            .values()
            .map(|h| h.handle.clone())
            .collect();
        out.sort_by(|a, b| a.key.cmp(&b.key));
        out
    }

    /// Reads a held lease back from the store and checks that it is still ours (same owner
    /// and counter). Returns its stored checkpoint, or `None` (and marks the lease lost) when
    /// another worker took it meanwhile. Called before a shard starts reading, so that a
    /// lease stolen while its shard waited for its parents is not read twice.
    ///
    /// # Errors
    /// [`LeaseError`] when the store fails.
    pub async fn verify(&self, key: &str) -> Result<Option<Checkpoint>, LeaseError> {
        let mut held = self.held.lock().await;
        let Some(h) = held.get(key) else {
            return Ok(None);
        };
        let stored = self.store.get(key).await?;
        match stored {
            Some(l) if l.owner.as_deref() == Some(&self.worker_id) && l.counter == h.counter => {
                Ok(Some(l.checkpoint))
            }
            _ => {
                if let Some(h) = held.remove(key) {
                    h.handle.lost.store(true, Ordering::SeqCst);
                    tracing::info!(lease = %key, "lease taken by another worker before the shard started");
                }
                Ok(None)
            }
        }
    }

    /// Keys of the leases held.
    pub async fn held_keys(&self) -> Vec<String> {
        let mut keys: Vec<String> = self.held.lock().await.keys().cloned().collect();
        keys.sort();
        keys
    }

    /// Writes a checkpoint for a held lease (conditional on counter and owner).
    ///
    /// # Errors
    /// [`LeaseError`] when the store fails (the lease stays held; retry).
    pub async fn checkpoint(
        &self,
        key: &str,
        checkpoint: Checkpoint,
    ) -> Result<CheckpointResult, LeaseError> {
        let mut held = self.held.lock().await;
        let Some(h) = held.get_mut(key) else {
            return Ok(CheckpointResult::LeaseLost);
        };
        if h.handle.is_lost()
            || h.last_renewed.elapsed() >= Duration::from_millis(self.config.failover_ms)
        {
            return Ok(CheckpointResult::LeaseLost);
        }
        let ok = self
            .store
            .update(
                key,
                h.counter,
                Some(&self.worker_id),
                &LeaseChange::Checkpoint(checkpoint.clone()),
                wall_millis(),
                self.expires_millis(),
            )
            .await?;
        if ok {
            h.counter += 1;
            h.last_renewed = Instant::now();
            h.handle.checkpoint = checkpoint;
            Ok(CheckpointResult::Written)
        } else {
            if let Some(h) = held.remove(key) {
                h.handle.lost.store(true, Ordering::SeqCst);
            }
            Ok(CheckpointResult::LeaseLost)
        }
    }

    /// Gives a held lease back (owner removed), so another worker takes it at once.
    ///
    /// # Errors
    /// [`LeaseError`] when the store fails (the lease then expires after `failover_ms`).
    pub async fn release(&self, key: &str) -> Result<(), LeaseError> {
        let Some(h) = self.held.lock().await.remove(key) else {
            return Ok(());
        };
        h.handle.lost.store(true, Ordering::SeqCst);
        let released = self
            .store
            .update(
                key,
                h.counter,
                Some(&self.worker_id),
                &LeaseChange::Release,
                wall_millis(),
                0,
            )
            .await?;
        if released {
            tracing::info!(lease = %key, "lease released");
        }
        Ok(())
    }

    /// Releases every held lease; returns the number of store errors (logged).
    pub async fn release_all(&self) -> usize {
        let mut errors = 0;
        for key in self.held_keys().await {
            if let Err(e) = self.release(&key).await {
                tracing::warn!(lease = %key, error = %e, "lease release failed; it will expire");
                errors += 1;
            }
        }
        errors
    }

    /// Whether every parent shard is finished ([`parent_finished`]): its lease is at
    /// `SHARD_END`, or it is absent from the non-empty `listed` shard ids (aged out of the
    /// stream, with or without a lease).
    ///
    /// # Errors
    /// [`LeaseError`] when the store fails.
    pub async fn parents_finished(
        &self,
        parents: &[String],
        listed: &HashSet<String>,
    ) -> Result<bool, LeaseError> {
        for p in parents {
            let key = Lease::key_of(&self.stage, &self.stream, p);
            let lease = self.store.get(&key).await?;
            if !parent_finished(p, lease.as_ref(), listed) {
                return Ok(false);
            }
        }
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shard(id: &str, parent: Option<&str>, closed: bool) -> ShardInfo {
        ShardInfo {
            shard_id: id.into(),
            parent_shard_id: parent.map(str::to_string),
            adjacent_parent_shard_id: None,
            ending_sequence_number: closed.then(|| "9".to_string()),
        }
    }

    fn lease(id: &str, parents: &[&str], checkpoint: Checkpoint, renewed: Option<i64>) -> Lease {
        Lease {
            key: Lease::key_of("ingest", "raw", id),
            stage: "ingest".into(),
            stream: "raw".into(),
            shard_id: id.into(),
            owner: None,
            counter: 3,
            checkpoint,
            owner_switches_since_checkpoint: 0,
            parent_shard_ids: parents.iter().map(|p| p.to_string()).collect(),
            last_renewal_millis: renewed,
        }
    }

    fn seq() -> Checkpoint {
        Checkpoint::Sequence {
            sequence_number: "5".into(),
            sub_sequence_number: None,
        }
    }

    #[test]
    fn a_parent_is_finished_at_shard_end_or_when_it_left_a_known_listing() {
        let listed: HashSet<String> = ["c".to_string()].into();
        let open = lease("p", &[], seq(), None);
        let ended = lease("p", &[], Checkpoint::ShardEnd, None);
        assert!(parent_finished("p", Some(&ended), &HashSet::new()));
        assert!(parent_finished("p", Some(&open), &listed));
        assert!(parent_finished("p", None, &listed));
        // Unknown listing: only SHARD_END counts.
        assert!(!parent_finished("p", Some(&open), &HashSet::new()));
        assert!(!parent_finished("p", None, &HashSet::new()));
        // Listed and unfinished, or listed without a lease (not created yet).
        let listed: HashSet<String> = ["p".to_string(), "c".to_string()].into();
        assert!(!parent_finished("p", Some(&open), &listed));
        assert!(!parent_finished("p", None, &listed));
    }

    #[test]
    fn removal_needs_every_known_child_started_and_the_retention() {
        let shards = vec![
            shard("p", None, true),
            shard("c1", Some("p"), false),
            shard("c2", Some("p"), false),
        ];
        let leases = vec![
            lease("p", &[], Checkpoint::ShardEnd, Some(1_000)),
            lease("c1", &["p"], seq(), Some(1_000)),
            lease("c2", &["p"], Checkpoint::TrimHorizon, None),
        ];
        assert!(removable_leases(&leases, &shards, 100_000, 10).is_empty());
        let mut started = leases.clone();
        started[2].checkpoint = Checkpoint::ShardEnd;
        let keys = |v: Vec<(&Lease, Removal)>| -> Vec<(String, Removal)> {
            v.into_iter()
                .map(|(l, r)| (l.shard_id.clone(), r))
                .collect()
        };
        assert_eq!(
            keys(removable_leases(&started, &shards, 1_009, 10)),
            Vec::new()
        );
        assert_eq!(
            keys(removable_leases(&started, &shards, 1_010, 10)),
            vec![("p".to_string(), Removal::Finished)]
        );
        // A child with a listed shard but no lease yet has not started.
        let no_child_lease = vec![started[0].clone(), started[1].clone()];
        assert!(removable_leases(&no_child_lease, &shards, 1_010, 10).is_empty());
    }

    #[test]
    fn an_aged_out_lease_goes_once_its_children_started_never_without_known_children() {
        // The parent left the listing; its children name it.
        let shards = vec![shard("c1", Some("p"), false)];
        let leases = vec![
            lease("p", &[], seq(), Some(1_000)),
            lease("c1", &["p"], seq(), Some(1_000)),
        ];
        let got: Vec<(String, Removal)> = removable_leases(&leases, &shards, 0, u64::MAX)
            .into_iter()
            .map(|(l, r)| (l.shard_id.clone(), r))
            .collect();
        assert_eq!(got, vec![("p".to_string(), Removal::AgedOut)]);
        // A lease absent from a (possibly stale) listing with no known child stays: it may be
        // a shard newer than the listing.
        let leases = vec![lease("new", &[], Checkpoint::TrimHorizon, None)];
        assert!(removable_leases(&leases, &shards, 0, 0).is_empty());
        // An empty listing (not known) removes nothing.
        let leases = vec![
            lease("p", &[], Checkpoint::ShardEnd, None),
            lease("c1", &["p"], seq(), None),
        ];
        assert!(removable_leases(&leases, &[], 0, 0).is_empty());
    }
}
