//! Threads that decode whole inputs (files, S3 objects) for the ingest thread, so a replay
//! decodes on every core. Ingest hands each input over with a reply channel of its own and
//! waits for the replies in the order it handed the inputs over, so what follows decode (the
//! de-duplication, change rules, archive and statistics) sees the inputs in the same order
//! whatever the number of threads. At most [`DecodePool::in_flight`] inputs are decoding or
//! decoded and waiting at once (ingest enforces it), which bounds the memory they hold.

use super::shared::spawn_stage;
use crate::error::Result;
use aiops_ingest::decode::{DecodeLimits, DecodeOutput, decode_file};
use crossbeam_channel::{Receiver, Sender, bounded};
use std::thread::JoinHandle;

/// One input to decode and where its result goes.
struct Job {
    name: String,
    data: Vec<u8>,
    ingest_time: i64,
    reply: Sender<DecodeOutput>,
}

/// The decode threads (see the module documentation); they end when the pool is dropped.
pub(crate) struct DecodePool {
    jobs: Option<Sender<Job>>,
    threads: Vec<JoinHandle<()>>,
    in_flight: usize,
    limits: DecodeLimits,
}

impl DecodePool {
    /// Starts `threads` decode threads (0: one per core), decoding with `limits`.
    ///
    /// # Errors
    /// When a thread cannot be started.
    pub(crate) fn start(threads: usize, limits: DecodeLimits) -> Result<DecodePool> {
        let threads = match threads {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        }
        .max(1);
        let (tx, rx) = bounded::<Job>(threads);
        let mut handles = Vec::with_capacity(threads);
        for _ in 0..threads {
            let rx: Receiver<Job> = rx.clone();
            handles.push(spawn_stage("decode", move || {
                for job in rx {
                    let mut out = DecodeOutput::default();
                    decode_file(&job.name, &job.data, job.ingest_time, &limits, &mut out);
                    drop(job.data);
                    // Ingest stopped waiting: nothing to do with the result.
                    let _ = job.reply.send(out);
                }
            })?);
        }
        Ok(DecodePool {
            jobs: Some(tx),
            threads: handles,
            in_flight: threads * 2 + 2,
            limits,
        })
    }

    /// Most inputs ingest should have handed over and not yet taken back: two per thread and
    /// two more, so every thread has the next input at hand while ingest works.
    pub(crate) fn in_flight(&self) -> usize {
        self.in_flight
    }

    /// Hands `data` (named `name`) over for decoding; its result arrives on the returned
    /// channel. Blocks while every thread is busy and the queue is full.
    pub(crate) fn submit(
        &self,
        name: String,
        data: Vec<u8>,
        ingest_time: i64,
    ) -> Receiver<DecodeOutput> {
        let (reply, rx) = bounded(1);
        let job = Job {
            name,
            data,
            ingest_time,
            reply,
        };
        if let Some(jobs) = &self.jobs
            && let Err(crossbeam_channel::SendError(job)) = jobs.send(job)
        {
            // Every decode thread is gone (one panicked): decode here instead.
            let mut out = DecodeOutput::default();
            decode_file(
                &job.name,
                &job.data,
                job.ingest_time,
                &self.limits,
                &mut out,
            );
            let _ = job.reply.send(out);
        }
        rx
    }
}

impl Drop for DecodePool {
    fn drop(&mut self) {
        self.jobs = None;
        for h in self.threads.drain(..) {
            if h.join().is_err() {
                tracing::error!("a decode thread panicked");
            }
        }
    }
}
