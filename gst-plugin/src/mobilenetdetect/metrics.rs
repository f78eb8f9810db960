//! What `mobilenetdetect` counts for the Prometheus endpoint (`crate::metrics`): frames, inferences and their
//! run time, detections per class, and the model in use with its swaps.

use crate::metrics::{Exposition, Histogram, Source};
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Default)]
pub(super) struct DetectMetrics {
    pub(super) frames: AtomicU64,
    pub(super) inferences: AtomicU64,
    pub(super) inference_seconds: Histogram,
    /// By class name (a swapped-in model may number its classes otherwise).
    detections: Mutex<BTreeMap<String, u64>>,
    pub(super) swaps: AtomicU64,
    /// The file of the model in use.
    pub(super) model: Mutex<String>,
}

impl DetectMetrics {
    /// Counts one detection; allocates only the first time a class is seen.
    pub(super) fn detected(&self, class: &str) {
        let mut by_class = self.detections.lock().unwrap();
        match by_class.get_mut(class) {
            Some(n) => *n += 1,
            None => {
                by_class.insert(class.to_string(), 1);
            }
        }
    }
}

impl Source for DetectMetrics {
    fn write(&self, element: &gst::Element, out: &mut Exposition) {
        let counter = |v: &AtomicU64| v.load(Ordering::Relaxed) as f64;
        out.sample(
            element,
            (
                "mobilenetdetect_frames_total",
                "counter",
                "Frames that passed through the element",
            ),
            &[],
            counter(&self.frames),
        );
        out.sample(
            element,
            ("mobilenetdetect_inferences_total", "counter", "Frames the model ran on"),
            &[],
            counter(&self.inferences),
        );
        out.histogram(
            element,
            "mobilenetdetect_inference_seconds",
            "Time one model run took on its worker (preprocessed tensor to decoded detections)",
            &self.inference_seconds,
        );
        for (class, n) in self.detections.lock().unwrap().iter() {
            out.sample(
                element,
                (
                    "mobilenetdetect_detections_total",
                    "counter",
                    "Detections attached to frames, by class",
                ),
                &[("class", class)],
                *n as f64,
            );
        }
        out.sample(
            element,
            (
                "mobilenetdetect_model_swaps_total",
                "counter",
                "Models swapped in while running",
            ),
            &[],
            counter(&self.swaps),
        );
        let model = self.model.lock().unwrap().clone();
        if !model.is_empty() {
            out.sample(
                element,
                (
                    "mobilenetdetect_model_info",
                    "gauge",
                    "The model in use (its file), always 1",
                ),
                &[("model", &model)],
                1.0,
            );
        }
    }
}
