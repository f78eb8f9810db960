//! The writer thread's side of `detectioncapture`: samples into a dataset folder, or into the spool and on to
//! object storage; failures counted (and warned about) without stopping the capture.

use super::imp::CAT;
use super::upload::{BucketWriter, SpoolError, Uploaded};
use super::writer::{DatasetWriter, Sample};
use crate::background::Work;
use gst::prelude::*;
use gst::subclass::prelude::*;
use std::sync::atomic::Ordering;
use std::time::Duration;

pub enum Destination {
    Folder(DatasetWriter),
    Bucket(Box<BucketWriter>),
}

/// Between frames, spooled samples get at most this long per round, so new frames are not held up by a long
/// backlog (the rest goes out in the next rounds and while the stream is idle).
const UPLOAD_SLICE: Duration = Duration::from_millis(500);
/// How often an idle writer thread retries uploads.
const IDLE_RETRY: Duration = Duration::from_millis(500);

pub struct SampleWriter {
    element: super::DetectionCapture,
    destination: Destination,
    /// Upload failures in a row (warned about at 1, 2, 4, 8, ...).
    failures: u64,
}

impl SampleWriter {
    pub fn new(element: super::DetectionCapture, destination: Destination) -> Self {
        Self {
            element,
            destination,
            failures: 0,
        }
    }

    /// Counts a sample that could not be written: warned about, nothing half-written, capture goes on.
    fn lost(&self, e: &str) {
        let (element, imp) = (&self.element, self.element.imp());
        let n = imp.lost.fetch_add(1, Ordering::SeqCst) + 1;
        gst::warning!(CAT, obj = element, "sample lost ({n} so far): {e}");
        if n == 1 || n.is_power_of_two() || n.is_multiple_of(1000) {
            gst::element_warning!(
                element,
                gst::ResourceError::Write,
                ("{} (samples lost so far: {}; capture goes on)", e, n)
            );
        }
        element.notify("lost");
    }

    /// Uploads what the spool holds (within `slice`, or the flush grace), and reports progress and failures.
    fn upload(&mut self, flush: bool, slice: Duration) {
        let Destination::Bucket(bucket) = &mut self.destination else {
            return;
        };
        if !flush && !bucket.due() {
            return;
        }
        let Uploaded {
            samples,
            bytes,
            failure,
        } = if flush { bucket.flush() } else { bucket.upload(slice) };
        let waiting = bucket.waiting() as u64;
        let (element, imp) = (&self.element, self.element.imp());
        imp.spooled.store(waiting, Ordering::SeqCst);
        if samples > 0 {
            imp.uploaded.fetch_add(samples, Ordering::SeqCst);
            gst::debug!(
                CAT,
                obj = element,
                "uploaded {samples} samples ({bytes} bytes), {waiting} waiting"
            );
            element.notify("uploaded");
        }
        match failure {
            Some(e) => {
                self.failures += 1;
                let n = self.failures;
                gst::warning!(CAT, obj = element, "upload failed ({n} in a row): {e}");
                if n.is_power_of_two() || flush {
                    let spool = bucket.spool_dir().display().to_string();
                    gst::element_warning!(
                        element,
                        gst::ResourceError::Write,
                        (
                            "upload failed: {} ({} samples wait in the spool {}; they go out once the bucket is \
                             reachable, by this run or the next one with the same spool)",
                            e,
                            waiting,
                            spool
                        )
                    );
                }
            }
            None if self.failures > 0 => {
                gst::info!(
                    CAT,
                    obj = element,
                    "uploads work again after {} failures",
                    self.failures
                );
                self.failures = 0;
            }
            None => {}
        }
    }
}

impl Work for SampleWriter {
    type Item = Sample;

    fn started(&mut self) {
        crate::fleet::block_sigpipe_in_this_thread();
    }

    fn write(&mut self, sample: Sample) -> Result<(), ()> {
        let element = self.element.clone();
        let imp = element.imp();
        let written = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| match &mut self.destination {
            Destination::Folder(dataset) => dataset
                .write(&sample)
                .map(|_| dataset.bytes)
                .map_err(SpoolError::Failed),
            Destination::Bucket(bucket) => bucket
                .spool(&sample)
                .map(|size| imp.bytes.load(Ordering::SeqCst) + size),
        }));
        let Ok(written) = written else {
            // A bug, not a disk fault: stop capturing with an error instead of taking the process down.
            gst::element_error!(
                element,
                gst::LibraryError::Failed,
                ("the capture writer failed unexpectedly; samples written so far are complete")
            );
            return Err(());
        };
        match written {
            Ok(bytes) => {
                imp.captured.fetch_add(1, Ordering::SeqCst);
                imp.bytes.store(bytes, Ordering::SeqCst);
            }
            Err(SpoolError::Full) => {
                let n = imp.dropped.fetch_add(1, Ordering::SeqCst) + 1;
                gst::warning!(CAT, obj = element, "upload spool full, sample dropped ({n} so far)");
                if n == 1 || n.is_multiple_of(100) {
                    gst::element_warning!(
                        element,
                        gst::ResourceError::NoSpaceLeft,
                        (
                            "the upload spool is full (the bucket is unreachable or slow): {} samples dropped so far",
                            n
                        )
                    );
                }
                element.notify("dropped");
            }
            // A full disk or a permission changed mid-run: this sample left nothing the trainer reads, earlier
            // ones stay intact, and later ones are still tried (the fault may pass).
            Err(SpoolError::Failed(e)) => self.lost(&e),
        }
        self.upload(false, UPLOAD_SLICE);
        Ok(())
    }

    fn flush(&mut self) {
        self.upload(true, Duration::ZERO);
    }

    fn idle_after(&self) -> Option<Duration> {
        match &self.destination {
            Destination::Bucket(b) if b.waiting() > 0 => Some(IDLE_RETRY),
            _ => None,
        }
    }

    fn idle(&mut self) {
        self.upload(false, UPLOAD_SLICE);
    }
}
