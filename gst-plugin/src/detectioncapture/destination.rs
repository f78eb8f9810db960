//! The writer thread's side of `detectioncapture`: samples into a dataset folder, or into the spool (whose own
//! thread uploads them to object storage); failures counted (and warned about) without stopping the capture.

use super::imp::CAT;
use super::upload::{BucketWriter, SpoolError, UploadReport};
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

pub struct SampleWriter {
    element: super::DetectionCapture,
    destination: Destination,
    /// s3://: how long EOS waits for the spool to empty.
    eos_timeout: Duration,
}

/// Counts a sample that could not be written or uploaded: warned about, nothing half-written, capture goes on.
fn count_lost(element: &super::DetectionCapture, e: &str) {
    let n = element.imp().lost.fetch_add(1, Ordering::SeqCst) + 1;
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

/// The uploader thread's news, as the element's counters, log lines and warnings.
pub struct ElementReport(pub super::DetectionCapture);

impl UploadReport for ElementReport {
    fn uploaded(&self, samples: u64, bytes: u64, waiting: u64) {
        let (element, imp) = (&self.0, self.0.imp());
        imp.spooled.store(waiting, Ordering::SeqCst);
        imp.uploaded.fetch_add(samples, Ordering::SeqCst);
        gst::debug!(
            CAT,
            obj = element,
            "uploaded {samples} samples ({bytes} bytes), {waiting} waiting"
        );
        element.notify("uploaded");
    }

    fn failed(&self, e: &str, waiting: u64, in_a_row: u64, spool: &std::path::Path) {
        let element = &self.0;
        element.imp().spooled.store(waiting, Ordering::SeqCst);
        gst::warning!(CAT, obj = element, "upload failed ({in_a_row} in a row): {e}");
        if in_a_row.is_power_of_two() {
            gst::element_warning!(
                element,
                gst::ResourceError::Write,
                (
                    "upload failed: {} ({} samples wait in the spool {}; they go out once the bucket is \
                     reachable, by this run or the next one with the same spool)",
                    e,
                    waiting,
                    spool.display()
                )
            );
        }
    }

    fn recovered(&self, failures: u64) {
        gst::info!(CAT, obj = self.0, "uploads work again after {failures} failures");
    }

    fn lost(&self, e: &str, waiting: u64) {
        self.0.imp().spooled.store(waiting, Ordering::SeqCst);
        count_lost(&self.0, e);
    }
}

impl SampleWriter {
    pub fn new(element: super::DetectionCapture, destination: Destination, eos_timeout: Duration) -> Self {
        Self {
            element,
            destination,
            eos_timeout,
        }
    }
}

impl Work for SampleWriter {
    type Item = Sample;

    fn write(&mut self, sample: Sample) -> Result<(), ()> {
        let element = self.element.clone();
        let imp = element.imp();
        let written = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| match &mut self.destination {
            Destination::Folder(dataset) => dataset
                .write(&sample)
                .map(|_| dataset.bytes)
                .map_err(SpoolError::Failed),
            Destination::Bucket(bucket) => bucket.spool(&sample).map(|size| {
                imp.spooled.store(bucket.waiting() as u64, Ordering::SeqCst);
                imp.bytes.load(Ordering::SeqCst) + size
            }),
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
            Err(SpoolError::Failed(e)) => count_lost(&element, &e),
        }
        Ok(())
    }

    /// At EOS: the spool gets `eos_timeout` to empty (the rest waits for the next run).
    fn flush(&mut self) {
        if let Destination::Bucket(bucket) = &self.destination {
            let left = bucket.flush(self.eos_timeout);
            if left > 0 {
                gst::info!(
                    CAT,
                    obj = self.element,
                    "{left} samples wait in the spool {} for the next run",
                    bucket.spool_dir().display()
                );
            }
        }
    }

    /// Stopping: the uploader stops at once; the spool keeps what is left.
    fn finish(&mut self) {
        if let Destination::Bucket(bucket) = &mut self.destination {
            bucket.stop();
            self.element
                .imp()
                .spooled
                .store(bucket.waiting() as u64, Ordering::SeqCst);
        }
    }
}
