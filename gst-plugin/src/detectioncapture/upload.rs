//! Captures into object storage (`location=s3://bucket/prefix`): the same Pascal VOC layout as a folder, written
//! by any number of devices at once.
//!
//! - Names are unique per writer (`ID-RUN-NNNNNN`: ID the device id, or `DEVICE-2`, `DEVICE-3`, … for further
//!   capture elements on one host with the same device id and location; RUN the start time in seconds, kept
//!   increasing across restarts by the spool), so writers never share an object: no locks, no read-modify-write.
//!   Each writer keeps its own label list in `labels/ID.txt`; the trainer merges them.
//! - Every sample goes through a bounded on-disk spool first (`NAME.jpg`, then `NAME.xml` to mark it complete),
//!   so an outage loses nothing until the spool is full; then samples are dropped and counted. One element at a
//!   time owns a spool (a lock on it): two writers never adopt each other's samples.
//! - The streaming side's writer thread only spools (local disk); a thread of its own uploads, oldest first:
//!   the labels when they changed, the JPEG, then the XML. A server that stops answering therefore never backs
//!   up the frame queue. A sample exists for readers once its XML is listed, and by then its JPEG is there. A
//!   sample uploaded twice (a crash between the upload and the spool cleanup) lands on the same keys. A spooled
//!   sample that cannot be read back is reported lost and skipped, never retried forever.

use super::writer::{Encoder, Sample, annotation_xml, merge_labels};
use crate::fleet::Claim;
use detection_common::files::write_atomically;
use detection_common::labels::names_to_text;
use detection_storage::{Bucket, Cancel, ErrorKind, Overrides, S3Url};
use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The first wait after a failed upload; doubled per failure up to `MAX_BACKOFF`.
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Why a sample was not taken.
pub enum SpoolError {
    /// The spool is at its size limit (the network is down or too slow): the sample is dropped.
    Full,
    /// It could not be encoded or written locally.
    Failed(String),
}

/// What the uploader thread tells the element.
pub trait UploadReport: Send + 'static {
    /// `samples` more are in the bucket; `waiting` are left in the spool.
    fn uploaded(&self, samples: u64, bytes: u64, waiting: u64);
    /// An upload failed (`in_a_row` failures so far); the samples wait for the next try.
    fn failed(&self, error: &str, waiting: u64, in_a_row: u64, spool: &Path);
    /// Uploads work again after `failures`.
    fn recovered(&self, failures: u64);
    /// A spooled sample cannot be uploaded at all (its files are unreadable): it is given up and counted.
    fn lost(&self, error: &str, waiting: u64);
}

/// The spool's queue, shared by the writer thread (which adds) and the uploader (which takes).
#[derive(Default)]
struct Queue {
    /// Complete samples (name, bytes) in the spool, oldest first.
    waiting: VecDeque<(String, u64)>,
    bytes: u64,
    labels: Vec<String>,
    /// Changes whenever `labels` does.
    labels_version: u64,
    /// Remote failures since start (a flush stops waiting at the first one after it began).
    failures: u64,
    /// A flush asked the uploader not to wait out its backoff.
    hurry: bool,
    stop: bool,
}

struct Spool {
    dir: PathBuf,
    queue: Mutex<Queue>,
    /// Signalled on every change of `queue`.
    changed: Condvar,
}

impl Spool {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }
}

pub struct BucketWriter {
    spool: Arc<Spool>,
    limit: u64,
    prefix: S3Url,
    endpoint: String,
    /// This writer's identity: the device id, or `DEVICE-N` for the Nth writer of one host and location.
    claim: Claim,
    run: u64,
    next: u64,
    encoder: Encoder,
    cancel: Cancel,
    uploader: Option<JoinHandle<()>>,
    /// Held for the run: no other element takes this spool.
    _spool_claim: Claim,
}

/// The spool folder's samples, oldest first, and their bytes; a JPEG without its XML (killed mid-sample, or
/// after an upload between the two removals) is not a sample and goes.
fn spooled_samples(spool: &Path) -> Result<(Vec<(String, u64)>, u64), String> {
    let entries = std::fs::read_dir(spool).map_err(|e| format!("cannot list the spool {}: {e}", spool.display()))?;
    let mut waiting = Vec::new();
    let mut total = 0;
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().to_string();
        if let Some(id) = name.strip_suffix(".jpg")
            && !spool.join(format!("{id}.xml")).exists()
        {
            let _ = std::fs::remove_file(entry.path());
            continue;
        }
        if let Some(id) = name.strip_suffix(".xml") {
            let size = |ext: &str| std::fs::metadata(spool.join(format!("{id}.{ext}"))).map_or(0, |m| m.len());
            let bytes = size("jpg") + size("xml");
            total += bytes;
            waiting.push((id.to_string(), bytes));
        }
    }
    waiting.sort();
    Ok((waiting, total))
}

/// Where a run's spool is and who writes it.
pub struct SpoolChoice<'a> {
    pub device_id: &'a str,
    /// The `spool` property, if set; else `$XDG_STATE_HOME/mobilenetdetect/spool/ID/LOCATION`.
    pub folder: Option<&'a Path>,
    pub limit: u64,
}

impl BucketWriter {
    /// Opens the spool (creating it; samples left by an earlier run wait there), claims this writer's identity
    /// and the spool, and starts the uploader. Makes no network request: a device may start while offline.
    pub fn open(
        location: &str,
        overrides: &Overrides,
        choice: SpoolChoice<'_>,
        quality: u8,
        initial_labels: &[String],
        report: impl UploadReport,
    ) -> Result<Self, String> {
        let prefix = S3Url::parse(location).map_err(|e| e.to_string())?;
        let cancel = Cancel::default();
        let bucket = Bucket::open_url(&prefix, overrides)
            .map_err(|e| e.to_string())?
            .with_cancel(cancel.clone());
        let endpoint = bucket.endpoint.clone();
        let device = detection_storage::safe_name(choice.device_id);
        let claim = crate::fleet::claim_identity("s3", &format!("{endpoint} {location}"), &device)?;
        let dir = choice
            .folder
            .map(Path::to_path_buf)
            .unwrap_or_else(|| crate::fleet::state_dir("spool", &claim.id, location));
        std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create the spool {}: {e}", dir.display()))?;
        let spool_claim = crate::fleet::claim_folder(
            &dir,
            "spool",
            "give each capture pipeline its own spool (or leave 'spool' unset)",
        )?;
        detection_common::files::remove_dead_writers_temp_files(&dir);
        // RUN increases across restarts even if the clock went back, so names never repeat on this device.
        let run_file = dir.join("run");
        let last_run: u64 = std::fs::read_to_string(&run_file)
            .ok()
            .and_then(|t| t.trim().parse().ok())
            .unwrap_or(0);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let run = now.max(last_run + 1);
        let write_failed = |e: std::io::Error| format!("cannot write in the spool {}: {e}", dir.display());
        write_atomically(&run_file, run.to_string().as_bytes()).map_err(write_failed)?;
        let (waiting, bytes) = spooled_samples(&dir)?;
        let labels_path = dir.join("labels.txt");
        let labels = match std::fs::read_to_string(&labels_path) {
            Ok(text) => detection_common::labels::Labels::parse(&text).names().to_vec(),
            Err(_) => detection_common::labels::Labels::from_names(initial_labels.to_vec())
                .names()
                .to_vec(),
        };
        write_atomically(&labels_path, names_to_text(&labels).as_bytes()).map_err(write_failed)?;
        let spool = Arc::new(Spool {
            dir,
            queue: Mutex::new(Queue {
                waiting: waiting.into(),
                bytes,
                labels,
                // Uploaded once per run (cheap), so the bucket always has this writer's current list.
                labels_version: 1,
                ..Default::default()
            }),
            changed: Condvar::new(),
        });
        let uploader = Uploader {
            spool: spool.clone(),
            bucket,
            labels_key: prefix.child(&format!("labels/{}.txt", claim.id)),
            prefix: prefix.clone(),
            report,
        };
        let thread = std::thread::Builder::new()
            .name("detectioncapture-upload".into())
            .spawn(move || {
                crate::fleet::block_io_signals_in_this_thread();
                uploader.run()
            })
            .map_err(|e| format!("cannot start the upload thread: {e}"))?;
        Ok(Self {
            spool,
            limit: choice.limit,
            prefix,
            endpoint,
            claim,
            run,
            next: 0,
            encoder: Encoder::new(quality),
            cancel,
            uploader: Some(thread),
            _spool_claim: spool_claim,
        })
    }

    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The name this writer's samples start with.
    pub fn writer_id(&self) -> &str {
        &self.claim.id
    }

    /// Samples in the spool, waiting for upload.
    pub fn waiting(&self) -> usize {
        self.spool.lock().waiting.len()
    }

    pub fn spool_dir(&self) -> &Path {
        &self.spool.dir
    }

    /// Encodes a sample into the spool and hands it to the uploader; returns its size.
    pub fn spool(&mut self, sample: &Sample) -> Result<u64, SpoolError> {
        let id = format!("{}-{}-{:06}", self.claim.id, self.run, self.next);
        let labels_path = self.spool.dir.join("labels.txt");
        let labels = self.spool.lock().labels.clone();
        let merged = merge_labels(
            Some(labels.clone()),
            &[],
            &sample.boxes,
            &self.prefix.child(&format!("labels/{}.txt", self.claim.id)),
        )
        .map_err(SpoolError::Failed)?;
        let jpeg = self.encoder.jpeg(sample).map_err(SpoolError::Failed)?;
        let xml = annotation_xml(&id, sample);
        let size = (jpeg.len() + xml.len()) as u64;
        if self.limit > 0 && self.spool.lock().bytes + size > self.limit {
            return Err(SpoolError::Full);
        }
        if merged != labels {
            write_atomically(&labels_path, names_to_text(&merged).as_bytes())
                .map_err(|e| SpoolError::Failed(format!("cannot write {}: {e}", labels_path.display())))?;
        }
        let (jpg_path, xml_path) = (
            self.spool.dir.join(format!("{id}.jpg")),
            self.spool.dir.join(format!("{id}.xml")),
        );
        write_atomically(&jpg_path, jpeg)
            .map_err(|e| SpoolError::Failed(format!("cannot write {}: {e}", jpg_path.display())))?;
        if let Err(e) = write_atomically(&xml_path, xml.as_bytes()) {
            let _ = std::fs::remove_file(&jpg_path);
            return Err(SpoolError::Failed(format!("cannot write {}: {e}", xml_path.display())));
        }
        self.next += 1;
        let mut queue = self.spool.lock();
        if merged != queue.labels {
            queue.labels = merged;
            queue.labels_version += 1;
        }
        queue.bytes += size;
        queue.waiting.push_back((id, size));
        drop(queue);
        self.spool.changed.notify_all();
        Ok(size)
    }

    /// At EOS: waits until the spool is empty, an upload fails (the rest waits for the next run, as in an
    /// outage), or `timeout` passed; the uploader skips its backoff meanwhile. Returns the samples left.
    pub fn flush(&self, timeout: Duration) -> usize {
        let deadline = Instant::now() + timeout;
        let mut queue = self.spool.lock();
        let failures = queue.failures;
        queue.hurry = true;
        self.spool.changed.notify_all();
        while !queue.waiting.is_empty() && queue.failures == failures && !queue.stop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            queue = self
                .spool
                .changed
                .wait_timeout(queue, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        queue.hurry = false;
        queue.waiting.len()
    }

    /// Stops the uploader at once (a request in flight is abandoned); spooled samples wait for the next run.
    pub fn stop(&mut self) {
        self.spool.lock().stop = true;
        self.cancel.cancel();
        self.spool.changed.notify_all();
        if let Some(t) = self.uploader.take() {
            let _ = t.join();
        }
    }
}

impl Drop for BucketWriter {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Why one sample did not go up.
enum Failure {
    /// The bucket (may pass): retried after a backoff.
    Remote(detection_storage::Error),
    /// Its spooled files (cannot pass): the sample is given up.
    Local(String),
}

/// The upload thread: takes the oldest spooled sample, uploads it, removes it from the spool.
struct Uploader<R> {
    spool: Arc<Spool>,
    bucket: Bucket,
    prefix: S3Url,
    labels_key: String,
    report: R,
}

impl<R: UploadReport> Uploader<R> {
    fn run(self) {
        let mut backoff = FIRST_BACKOFF;
        let mut retry_at: Option<Instant> = None;
        let mut in_a_row = 0u64;
        let mut labels_uploaded = 0u64;
        loop {
            let (id, labels) = {
                let mut queue = self.spool.lock();
                loop {
                    if queue.stop {
                        return;
                    }
                    let backing_off = retry_at.filter(|t| !queue.hurry && Instant::now() < *t);
                    if let Some(t) = backing_off {
                        let wait = t.saturating_duration_since(Instant::now());
                        queue = self.wait(queue, Some(wait));
                        continue;
                    }
                    if let Some((id, _)) = queue.waiting.front() {
                        let labels = (queue.labels_version != labels_uploaded)
                            .then(|| (queue.labels.clone(), queue.labels_version));
                        break (id.clone(), labels);
                    }
                    queue = self.wait(queue, None);
                }
            };
            let result = match labels {
                Some((labels, version)) => self
                    .bucket
                    .put(&self.labels_key, names_to_text(&labels).into_bytes())
                    .map(|()| labels_uploaded = version)
                    .map_err(Failure::Remote)
                    .and_then(|()| self.upload_one(&id)),
                None => self.upload_one(&id),
            };
            match result {
                Ok(bytes) => {
                    retry_at = None;
                    backoff = FIRST_BACKOFF;
                    if in_a_row > 0 {
                        self.report.recovered(in_a_row);
                        in_a_row = 0;
                    }
                    // Counted before it leaves the queue: a flush that sees the queue empty sees the counts.
                    self.report.uploaded(1, bytes, self.waiting_after_this_one());
                    self.done_with(&id);
                }
                Err(Failure::Local(e)) => {
                    let _ = std::fs::remove_file(self.spool.dir.join(format!("{id}.jpg")));
                    let _ = std::fs::remove_file(self.spool.dir.join(format!("{id}.xml")));
                    self.report.lost(&e, self.waiting_after_this_one());
                    self.done_with(&id);
                }
                Err(Failure::Remote(e)) if e.kind == ErrorKind::Cancelled => return,
                Err(Failure::Remote(e)) => {
                    in_a_row += 1;
                    retry_at = Some(Instant::now() + backoff);
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    let waiting = {
                        let mut queue = self.spool.lock();
                        queue.failures += 1;
                        queue.waiting.len() as u64
                    };
                    self.spool.changed.notify_all();
                    self.report.failed(&e.to_string(), waiting, in_a_row, &self.spool.dir);
                }
            }
        }
    }

    fn wait<'a>(&self, queue: MutexGuard<'a, Queue>, at_most: Option<Duration>) -> MutexGuard<'a, Queue> {
        match at_most {
            Some(d) => {
                self.spool
                    .changed
                    .wait_timeout(queue, d)
                    .unwrap_or_else(|e| e.into_inner())
                    .0
            }
            None => self.spool.changed.wait(queue).unwrap_or_else(|e| e.into_inner()),
        }
    }

    /// The samples left once the one in hand (the queue's front; only this thread takes) is off the queue.
    fn waiting_after_this_one(&self) -> u64 {
        self.spool.lock().waiting.len().saturating_sub(1) as u64
    }

    /// Takes sample `id` off the queue.
    fn done_with(&self, id: &str) {
        let mut queue = self.spool.lock();
        if let Some(at) = queue.waiting.iter().position(|(w, _)| w == id) {
            let (_, bytes) = queue.waiting.remove(at).expect("position is in range");
            queue.bytes = queue.bytes.saturating_sub(bytes);
        }
        drop(queue);
        self.spool.changed.notify_all();
    }

    /// JPEG, then XML (which makes the sample exist for readers), then the spool's copy goes.
    fn upload_one(&self, id: &str) -> Result<u64, Failure> {
        let (jpg_path, xml_path) = (
            self.spool.dir.join(format!("{id}.jpg")),
            self.spool.dir.join(format!("{id}.xml")),
        );
        let read = |p: &Path| {
            std::fs::read(p).map_err(|e| {
                Failure::Local(format!(
                    "spooled sample {id} cannot be uploaded: cannot read {}: {e}",
                    p.display()
                ))
            })
        };
        let (jpeg, xml) = (read(&jpg_path)?, read(&xml_path)?);
        let bytes = (jpeg.len() + xml.len()) as u64;
        self.bucket
            .put(&self.prefix.child(&format!("JPEGImages/{id}.jpg")), jpeg)
            .map_err(Failure::Remote)?;
        self.bucket
            .put(&self.prefix.child(&format!("Annotations/{id}.xml")), xml)
            .map_err(Failure::Remote)?;
        // The XML goes first: a crash between the two leaves a JPEG without XML, which is not a sample.
        let _ = std::fs::remove_file(&xml_path);
        let _ = std::fs::remove_file(&jpg_path);
        Ok(bytes)
    }
}
