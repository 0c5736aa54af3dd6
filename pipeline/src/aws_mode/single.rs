//! The single deployment profile (`[aws] deployment_profile = "single"`): ingest, detect and
//! act in one process, on the raw stream only. Each raw shard has its own ingest processor (its
//! de-duplication window, its Parquet buffers, as in the scaled profile); its events go to one
//! detect processor the shards share (one statistics engine sees every event: a series may
//! arrive on any raw shard), whose findings go to one shared act processor — the stage
//! processors of the scaled profile, joined by [`ToProcessor`] instead of the events and
//! decisions streams.
//!
//! Delivery: a raw batch is processed once detect and act processed what it produced; a raw
//! shard checkpoints after its own archive and the shared findings and incidents buffers were
//! flushed to S3 (act writes both tables). Unlike the scaled profile, the shared statistics
//! engine's open windows live in memory only (no `[aws.detect_state]` snapshots: one engine
//! serves every raw shard, so no single shard checkpoint covers its state).

use super::act::{ActFactory, ActProcessor};
use super::detect::{DetectFactory, DetectProcessor};
use super::forward::ToProcessor;
use super::ingest::{IngestFactory, IngestProcessor, IngestShared};
use aiops_aws::consumer::{ConsumedRecord, ProcessError, ProcessorFactory, ShardProcessor};
use aiops_aws::objects::ObjectStore;
use std::sync::Arc;
use tokio::sync::Mutex;

/// The shared act processor.
pub type SharedAct<O> = Arc<Mutex<ActProcessor<O>>>;
/// The shared detect processor, forwarding to the shared act processor.
pub type SharedDetect<O> = Arc<Mutex<DetectProcessor<ToProcessor<ActProcessor<O>>, O>>>;
/// What each raw shard's ingest processor forwards to.
pub type ToDetect<O> = ToProcessor<DetectProcessor<ToProcessor<ActProcessor<O>>, O>>;

/// Creates one [`SingleProcessor`] per raw shard, all forwarding to the same detect and act.
pub struct SingleFactory<O> {
    ingest: IngestFactory<ToDetect<O>, O>,
    detect: SharedDetect<O>,
    act: SharedAct<O>,
}

impl<O: ObjectStore> SingleFactory<O> {
    /// Joins the stages: `act` makes the shared act processor (its object names start with
    /// `all`), `detect` the shared detect processor forwarding to it, and `ingest` (whose
    /// `forward` this fills) the per-shard ingest processors forwarding to detect.
    pub fn new(
        ingest: impl FnOnce(ToDetect<O>) -> IngestShared<ToDetect<O>, O>,
        detect: DetectFactory<ToProcessor<ActProcessor<O>>, O>,
        act: SharedAct<O>,
    ) -> SingleFactory<O> {
        let detect = Arc::new(Mutex::new(detect.create("all")));
        let ingest = IngestFactory(Arc::new(ingest(ToProcessor::new(detect.clone(), "events"))));
        SingleFactory {
            ingest,
            detect,
            act,
        }
    }

    /// The shared act processor of `factory` (for [`SingleFactory::new`]).
    pub fn act(factory: &ActFactory<O>) -> SharedAct<O> {
        Arc::new(Mutex::new(factory.create("all")))
    }
}

impl<O: ObjectStore> ProcessorFactory for SingleFactory<O> {
    type Processor = SingleProcessor<O>;
    fn create(&self, shard_id: &str) -> SingleProcessor<O> {
        SingleProcessor {
            ingest: self.ingest.create(shard_id),
            detect: self.detect.clone(),
            act: self.act.clone(),
        }
    }
}

/// The processor of one raw shard in the single profile.
pub struct SingleProcessor<O> {
    ingest: IngestProcessor<ToDetect<O>, O>,
    detect: SharedDetect<O>,
    act: SharedAct<O>,
}

impl<O: ObjectStore> ShardProcessor for SingleProcessor<O> {
    async fn process(&mut self, records: Vec<ConsumedRecord>) -> Result<(), ProcessError> {
        // Ingest forwards to detect, which forwards to act, each under its lock in turn.
        self.ingest.process(records).await
    }

    fn flush_due(&self) -> bool {
        // A shared processor busy with another shard's batch is asked again at the next batch.
        self.ingest.flush_due()
            || self.detect.try_lock().is_ok_and(|d| d.flush_due())
            || self.act.try_lock().is_ok_and(|a| a.flush_due())
    }

    async fn flush(&mut self) -> Result<(), ProcessError> {
        // Everything the shard's records produced is durable before it checkpoints: its raw
        // rows, then the findings and incidents of every shard so far (detect's lock is
        // released before act's is taken, the order `process` takes them in).
        self.ingest.flush().await?;
        self.detect.lock().await.flush().await?;
        self.act.lock().await.flush().await
    }
}

#[cfg(test)]
mod tests {
    use crate::aws_mode::{DeploymentProfile, Stage, profile_stages};

    #[test]
    fn the_single_profile_runs_the_three_stages_as_one_and_refuses_one_alone() {
        let three = [Stage::Ingest, Stage::Detect, Stage::Act];
        assert_eq!(
            profile_stages(DeploymentProfile::Single, &three).unwrap(),
            vec![Stage::All]
        );
        assert_eq!(
            profile_stages(DeploymentProfile::Scaled, &three).unwrap(),
            three.to_vec()
        );
        assert_eq!(
            profile_stages(DeploymentProfile::Scaled, &[Stage::Detect]).unwrap(),
            vec![Stage::Detect]
        );
        let alone = profile_stages(DeploymentProfile::Single, &[Stage::Detect]).unwrap_err();
        assert!(
            alone.to_string().contains("start it with `aiops run`"),
            "{alone}"
        );
        let all = profile_stages(DeploymentProfile::Scaled, &[Stage::All]).unwrap_err();
        assert_eq!(
            all.to_string(),
            "stage `all` needs aws.deployment_profile = \"single\""
        );
    }
}
