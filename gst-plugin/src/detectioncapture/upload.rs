//! Captures into object storage (`location=s3://bucket/prefix`): the same Pascal VOC layout as a folder, written
//! by any number of devices at once.
//!
//! - Names are unique per device (`DEVICE-RUN-NNNNNN`, RUN the start time in seconds, kept increasing across
//!   restarts by the spool), so writers never share an object: no locks, no read-modify-write. Each device
//!   keeps its own label list in `labels/DEVICE.txt`; the trainer merges them.
//! - Every sample goes through a bounded on-disk spool first (`NAME.jpg`, then `NAME.xml` to mark it complete),
//!   so an outage loses nothing until the spool is full; then samples are dropped and counted.
//! - Uploads run on the writer thread, oldest first: the labels when they changed, the JPEG, then the XML. A
//!   sample exists for readers once its XML is listed, and by then its JPEG is there. A sample uploaded twice
//!   (a crash between the upload and the spool cleanup) lands on the same keys: never duplicated.

use super::writer::{Encoder, Sample, annotation_xml, merge_labels};
use detection_common::files::write_atomically;
use detection_common::labels::names_to_text;
use detection_storage::{Bucket, Overrides, S3Url};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The first wait after a failed upload; doubled per failure up to `MAX_BACKOFF`.
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// At EOS, spooled samples get this long to go out before they are left for the next run.
const FLUSH_GRACE: Duration = Duration::from_secs(30);

/// Why a sample was not taken.
pub enum SpoolError {
    /// The spool is at its size limit (the network is down or too slow): the sample is dropped.
    Full,
    /// It could not be encoded or written locally.
    Failed(String),
}

/// What an upload round did.
#[derive(Debug, Default)]
pub struct Uploaded {
    pub samples: u64,
    pub bytes: u64,
    /// The upload that failed (samples after it wait in the spool).
    pub failure: Option<String>,
}

pub struct BucketWriter {
    bucket: Bucket,
    prefix: S3Url,
    device: String,
    run: u64,
    next: u64,
    spool: PathBuf,
    spool_limit: u64,
    pub spooled_bytes: u64,
    /// Complete samples waiting in the spool, oldest first.
    waiting: std::collections::VecDeque<String>,
    encoder: Encoder,
    labels: Vec<String>,
    labels_uploaded: bool,
    /// After a failure, no upload is tried before this instant.
    retry_at: Option<Instant>,
    backoff: Duration,
}

impl BucketWriter {
    /// Opens the spool (creating it; samples left by an earlier run wait there) and the bucket client. Makes no
    /// network request: a device may start while offline.
    pub fn open(
        location: &str,
        overrides: &Overrides,
        device_id: &str,
        spool: &Path,
        spool_limit: u64,
        quality: u8,
        initial_labels: &[String],
    ) -> Result<Self, String> {
        let prefix = S3Url::parse(location).map_err(|e| e.to_string())?;
        let bucket = Bucket::open_url(&prefix, overrides).map_err(|e| e.to_string())?;
        let device = detection_storage::safe_name(device_id);
        std::fs::create_dir_all(spool).map_err(|e| format!("cannot create the spool {}: {e}", spool.display()))?;
        detection_common::files::remove_dead_writers_temp_files(spool);
        // RUN increases across restarts even if the clock went back, so names never repeat on this device.
        let run_file = spool.join("run");
        let last_run: u64 = std::fs::read_to_string(&run_file)
            .ok()
            .and_then(|t| t.trim().parse().ok())
            .unwrap_or(0);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let run = now.max(last_run + 1);
        write_atomically(&run_file, run.to_string().as_bytes())
            .map_err(|e| format!("cannot write in the spool {}: {e}", spool.display()))?;

        let mut waiting = Vec::new();
        let mut spooled_bytes = 0;
        let entries =
            std::fs::read_dir(spool).map_err(|e| format!("cannot list the spool {}: {e}", spool.display()))?;
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().to_string();
            let size = entry.metadata().map(|m| m.len()).unwrap_or(0);
            if let Some(id) = name.strip_suffix(".jpg")
                && !spool.join(format!("{id}.xml")).exists()
            {
                // A JPEG whose XML never came (killed mid-sample, or after an upload between the two removals):
                // not a sample to send.
                let _ = std::fs::remove_file(entry.path());
                continue;
            }
            if name.ends_with(".jpg") || name.ends_with(".xml") {
                spooled_bytes += size;
            }
            if let Some(id) = name.strip_suffix(".xml") {
                waiting.push(id.to_string());
            }
        }
        waiting.sort();
        let labels_path = spool.join("labels.txt");
        let labels = match std::fs::read_to_string(&labels_path) {
            Ok(text) => detection_common::labels::Labels::parse(&text).names().to_vec(),
            Err(_) => detection_common::labels::Labels::from_names(initial_labels.to_vec())
                .names()
                .to_vec(),
        };
        write_atomically(&labels_path, names_to_text(&labels).as_bytes())
            .map_err(|e| format!("cannot write in the spool {}: {e}", spool.display()))?;
        Ok(Self {
            bucket,
            prefix,
            device,
            run,
            next: 0,
            spool: spool.to_path_buf(),
            spool_limit,
            spooled_bytes,
            waiting: waiting.into(),
            encoder: Encoder::new(quality),
            labels,
            // Uploaded once per run (cheap), so the bucket always has this device's current list.
            labels_uploaded: false,
            retry_at: None,
            backoff: FIRST_BACKOFF,
        })
    }

    pub fn endpoint(&self) -> &str {
        &self.bucket.endpoint
    }

    /// Samples in the spool, waiting for upload.
    pub fn waiting(&self) -> usize {
        self.waiting.len()
    }

    /// Encodes a sample into the spool; returns its size. Nothing is uploaded here.
    pub fn spool(&mut self, sample: &Sample) -> Result<u64, SpoolError> {
        let id = format!("{}-{}-{:06}", self.device, self.run, self.next);
        let labels_path = self.spool.join("labels.txt");
        let merged = merge_labels(
            Some(self.labels.clone()),
            &[],
            &sample.boxes,
            &self.prefix.child(&format!("labels/{}.txt", self.device)),
        )
        .map_err(SpoolError::Failed)?;
        let jpeg = self.encoder.jpeg(sample).map_err(SpoolError::Failed)?;
        let xml = annotation_xml(&id, sample);
        let size = (jpeg.len() + xml.len()) as u64;
        if self.spool_limit > 0 && self.spooled_bytes + size > self.spool_limit {
            return Err(SpoolError::Full);
        }
        if merged != self.labels {
            write_atomically(&labels_path, names_to_text(&merged).as_bytes())
                .map_err(|e| SpoolError::Failed(format!("cannot write {}: {e}", labels_path.display())))?;
            self.labels = merged;
            self.labels_uploaded = false;
        }
        let (jpg_path, xml_path) = (
            self.spool.join(format!("{id}.jpg")),
            self.spool.join(format!("{id}.xml")),
        );
        write_atomically(&jpg_path, jpeg)
            .map_err(|e| SpoolError::Failed(format!("cannot write {}: {e}", jpg_path.display())))?;
        if let Err(e) = write_atomically(&xml_path, xml.as_bytes()) {
            let _ = std::fs::remove_file(&jpg_path);
            return Err(SpoolError::Failed(format!("cannot write {}: {e}", xml_path.display())));
        }
        self.next += 1;
        self.spooled_bytes += size;
        self.waiting.push_back(id);
        Ok(size)
    }

    /// Whether an upload may be tried now (not while backing off after a failure).
    pub fn due(&self) -> bool {
        self.retry_at.is_none_or(|t| Instant::now() >= t)
    }

    /// Uploads spooled samples, oldest first, until the spool is empty, an upload fails, or `budget` is spent.
    pub fn upload(&mut self, budget: Duration) -> Uploaded {
        let started = Instant::now();
        let mut done = Uploaded::default();
        if !self.labels_uploaded && !self.waiting.is_empty() {
            let key = self.prefix.child(&format!("labels/{}.txt", self.device));
            if let Err(e) = self.bucket.put(&key, names_to_text(&self.labels).into_bytes()) {
                return self.failed(done, e.to_string());
            }
            self.labels_uploaded = true;
        }
        while let Some(id) = self.waiting.front().cloned() {
            if started.elapsed() >= budget {
                break;
            }
            match self.upload_one(&id) {
                Ok(bytes) => {
                    self.waiting.pop_front();
                    self.spooled_bytes = self.spooled_bytes.saturating_sub(bytes);
                    done.samples += 1;
                    done.bytes += bytes;
                }
                Err(e) => return self.failed(done, e),
            }
        }
        self.retry_at = None;
        self.backoff = FIRST_BACKOFF;
        done
    }

    fn failed(&mut self, mut done: Uploaded, e: String) -> Uploaded {
        self.retry_at = Some(Instant::now() + self.backoff);
        self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
        done.failure = Some(e);
        done
    }

    /// JPEG, then XML (which makes the sample exist for readers), then the spool's copy goes.
    fn upload_one(&mut self, id: &str) -> Result<u64, String> {
        let (jpg_path, xml_path) = (
            self.spool.join(format!("{id}.jpg")),
            self.spool.join(format!("{id}.xml")),
        );
        let read = |p: &Path| std::fs::read(p).map_err(|e| format!("cannot read {}: {e}", p.display()));
        let (jpeg, xml) = (read(&jpg_path)?, read(&xml_path)?);
        let bytes = (jpeg.len() + xml.len()) as u64;
        self.bucket
            .put(&self.prefix.child(&format!("JPEGImages/{id}.jpg")), jpeg)
            .map_err(|e| e.to_string())?;
        self.bucket
            .put(&self.prefix.child(&format!("Annotations/{id}.xml")), xml)
            .map_err(|e| e.to_string())?;
        // The XML goes first: a crash between the two leaves a JPEG without XML, which is not a sample.
        let _ = std::fs::remove_file(&xml_path);
        let _ = std::fs::remove_file(&jpg_path);
        Ok(bytes)
    }

    /// At EOS or stop: what is spooled gets `FLUSH_GRACE` to go out (ignoring the backoff once).
    pub fn flush(&mut self) -> Uploaded {
        self.retry_at = None;
        self.upload(FLUSH_GRACE)
    }

    pub fn spool_dir(&self) -> &Path {
        &self.spool
    }
}
