//! The act stage on Kinesis: each record of the decisions stream is one JSON `Finding`; the
//! incident workflow (DESIGN §6: DETECTED -> ANALYZING -> DECIDED -> ...) runs for it with the
//! store, explainer, executor and notifier `[act]` configures (in aws mode: DynamoDB). The
//! workflow's AWS adapters block on their own runtime, so each finding runs on a blocking
//! thread. A finding delivered twice opens one incident (the incident id derives from the
//! finding id, created conditionally). Every incident snapshot handled is buffered for the
//! `incidents` history table on S3, written at flush, before the shard checkpoints.

use super::counters::StageCounters;
use super::tables::TableBuffer;
use aiops_act::ActWorkflow;
use aiops_aws::consumer::{ConsumedRecord, ProcessError, ProcessorFactory, ShardProcessor};
use aiops_aws::objects::ObjectStore;
use aiops_core::Finding;
use aiops_ingest::archive::{ArchiveConfig, IncidentRow};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// What every act shard processor shares.
pub struct ActShared<O> {
    /// The workflow.
    pub workflow: Arc<ActWorkflow>,
    /// Least time between checkpoints.
    pub checkpoint_interval: Duration,
    /// Counters.
    pub counters: Arc<StageCounters>,
    /// Where the `incidents` table goes.
    pub objects: Arc<O>,
    /// Key prefix of the history.
    pub prefix: String,
    /// Roll-over bounds of the `incidents` objects.
    pub archive: ArchiveConfig,
}

/// Creates one [`ActProcessor`] per shard.
pub struct ActFactory<O>(pub Arc<ActShared<O>>);

impl<O: ObjectStore> ProcessorFactory for ActFactory<O> {
    type Processor = ActProcessor<O>;
    fn create(&self, shard_id: &str) -> ActProcessor<O> {
        ActProcessor {
            incidents: TableBuffer::new(&self.0.prefix, shard_id, self.0.archive),
            shared: self.0.clone(),
            last_flush: Instant::now(),
        }
    }
}

/// The act processor of one shard.
pub struct ActProcessor<O> {
    shared: Arc<ActShared<O>>,
    incidents: TableBuffer<IncidentRow>,
    last_flush: Instant,
}

impl<O: ObjectStore> ShardProcessor for ActProcessor<O> {
    async fn process(&mut self, records: Vec<ConsumedRecord>) -> Result<(), ProcessError> {
        let c = &self.shared.counters;
        for r in records {
            c.records.fetch_add(1, Ordering::Relaxed);
            let finding: Finding = match serde_json::from_slice(&r.data) {
                Ok(f) => f,
                Err(e) => {
                    c.bad_records.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(shard = %r.shard_id, sequence_number = %r.sequence_number, error = %e, "decisions stream record is not a Finding; skipped");
                    continue;
                }
            };
            c.findings.fetch_add(1, Ordering::Relaxed);
            let workflow = self.shared.workflow.clone();
            let handled = tokio::task::spawn_blocking(move || workflow.handle(&finding))
                .await
                .map_err(|e| ProcessError(format!("incident workflow panicked: {e}")))?
                .map_err(|e| ProcessError(e.to_string()))?;
            if let Some(reason) = &handled.suppressed {
                c.suppressed_findings.fetch_add(1, Ordering::Relaxed);
                tracing::info!(shard = %r.shard_id, %reason, "finding suppressed: recorded, no incident");
            }
            if handled.opened {
                c.incidents.fetch_add(1, Ordering::Relaxed);
            }
            if let Some(i) = &handled.incident {
                tracing::info!(incident = %i.incident_id, state = %i.state, resource = %i.resource_key, "incident");
                self.incidents
                    .append(aiops_history::tables::incident_row(i));
            }
        }
        Ok(())
    }

    fn flush_due(&self) -> bool {
        self.last_flush.elapsed() >= self.shared.checkpoint_interval || self.incidents.flush_due()
    }

    async fn flush(&mut self) -> Result<(), ProcessError> {
        if self.incidents.rows() > 0 {
            let keys = self
                .incidents
                .flush(self.shared.objects.as_ref())
                .await
                .map_err(|e| ProcessError(e.to_string()))?;
            tracing::info!(objects = keys.len(), "incidents table flushed");
        }
        self.last_flush = Instant::now();
        Ok(())
    }
}
