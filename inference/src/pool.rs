//! Inference on worker threads: up to N prepared tensors are run at once on shared models, and each result
//! comes back with the id it was submitted under, so the caller decides the order (frames in order for a
//! filter, newest only for a live stream). Tensors and detection lists travel with the request and come back
//! with the result to be used again: nothing is allocated per frame once enough are going round.

use crate::model::Model;
use crate::postprocess::PostProcess;
use crate::preprocess::TensorOut;
use detection_common::Detection;
use std::sync::mpsc::{Receiver, Sender, TryRecvError, channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// One tensor to run.
pub struct Request {
    pub id: u64,
    pub model: Arc<Model>,
    pub post: Arc<PostProcess>,
    pub tensor: TensorOut,
    /// Filled with the detections (boxes normalised to the tensor); its capacity is reused.
    pub detections: Vec<Detection>,
}

/// A request done: its tensor and detection list are the caller's again.
pub struct Finished {
    pub id: u64,
    pub model: Arc<Model>,
    pub tensor: TensorOut,
    pub detections: Vec<Detection>,
    /// Why the run failed, if it did (a panic in the run is reported here too, never lost).
    pub error: Option<String>,
    /// The time the run itself took on the worker.
    pub run_time: Duration,
}

pub struct InferencePool {
    requests: Option<Sender<Request>>,
    finished: Receiver<Finished>,
    workers: Vec<JoinHandle<()>>,
    in_flight: usize,
}

impl InferencePool {
    /// `workers` threads (at least one) named `name-N`. `added_delay` is slept after each run: a test's way
    /// to make a model slow without using CPU.
    pub fn new(workers: usize, name: &str, added_delay: Duration) -> std::io::Result<Self> {
        let (requests, incoming) = channel::<Request>();
        let incoming = Arc::new(Mutex::new(incoming));
        let (done, finished) = channel();
        let workers = (0..workers.max(1))
            .map(|i| {
                let (incoming, done) = (incoming.clone(), done.clone());
                std::thread::Builder::new()
                    .name(format!("{name}-{i}"))
                    .spawn(move || work(&incoming, &done, added_delay))
            })
            .collect::<std::io::Result<Vec<_>>>()?;
        Ok(Self {
            requests: Some(requests),
            finished,
            workers,
            in_flight: 0,
        })
    }

    /// How many requests can run at once.
    pub fn capacity(&self) -> usize {
        self.workers.len()
    }

    /// Requests submitted whose result has not been taken yet.
    pub fn in_flight(&self) -> usize {
        self.in_flight
    }

    /// Queues a request; never blocks (a request beyond capacity waits for a free worker).
    pub fn submit(&mut self, request: Request) {
        if let Some(requests) = &self.requests {
            // The workers live as long as the pool, so this cannot fail.
            if requests.send(request).is_ok() {
                self.in_flight += 1;
            }
        }
    }

    /// A finished request, if one is ready.
    pub fn try_finished(&mut self) -> Option<Finished> {
        match self.finished.try_recv() {
            Ok(f) => {
                self.in_flight -= 1;
                Some(f)
            }
            Err(TryRecvError::Empty | TryRecvError::Disconnected) => None,
        }
    }

    /// Waits for the next finished request; `None` when nothing is in flight.
    pub fn wait_finished(&mut self) -> Option<Finished> {
        if self.in_flight == 0 {
            return None;
        }
        let f = self.finished.recv().ok()?;
        self.in_flight -= 1;
        Some(f)
    }
}

impl Drop for InferencePool {
    /// Runs in progress finish; their results are dropped.
    fn drop(&mut self) {
        self.requests = None;
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}

fn work(incoming: &Mutex<Receiver<Request>>, done: &Sender<Finished>, added_delay: Duration) {
    loop {
        // The lock is held only while waiting for the next request, never during a run.
        let next = incoming.lock().unwrap_or_else(|e| e.into_inner()).recv();
        let Ok(mut r) = next else { return };
        let started = Instant::now();
        let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            r.model.detect(
                &r.tensor.spec,
                &r.tensor.f32s,
                &r.tensor.u8s,
                &r.post,
                &mut r.detections,
            )
        }));
        let error = match run {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(e),
            Err(panic) => Some(format!(
                "the inference panicked: {}",
                panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_default()
            )),
        };
        if !added_delay.is_zero() {
            std::thread::sleep(added_delay);
        }
        let finished = Finished {
            id: r.id,
            model: r.model,
            tensor: r.tensor,
            detections: r.detections,
            error,
            run_time: started.elapsed(),
        };
        if done.send(finished).is_err() {
            return;
        }
    }
}
