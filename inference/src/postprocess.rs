//! Candidate detections -> the detections of a frame: the per-class score gate (the `classes` and
//! `class-thresholds` filters) and class-aware NMS, in one call.

use crate::decode::Decoder;
use detection_common::Detection;
use detection_common::labels::{ClassRef, Labels, parse_class_list, parse_class_thresholds};
use detection_common::nms::nms_in_place;

/// Per-class score thresholds after the `classes` filter: `INFINITY` means the class is never reported.
#[derive(Debug, Clone, PartialEq)]
pub struct ClassGate {
    per_class: Vec<f32>,
    fallback: f32,
}

impl ClassGate {
    pub fn new(score_threshold: f32, classes: &str, class_thresholds: &str, labels: &Labels) -> Result<Self, String> {
        let allowed: Vec<usize> = parse_class_list(classes)
            .iter()
            .map(|c| c.resolve(labels).map_err(|e| format!("classes: {e}")))
            .collect::<Result<_, _>>()?;
        let overrides: Vec<(usize, f32)> = parse_class_thresholds(class_thresholds)
            .map_err(|e| format!("class-thresholds: {e}"))?
            .into_iter()
            .map(|(c, t): (ClassRef, f32)| {
                c.resolve(labels)
                    .map(|id| (id, t))
                    .map_err(|e| format!("class-thresholds: {e}"))
            })
            .collect::<Result<_, _>>()?;
        let len = [labels.len()]
            .into_iter()
            .chain(allowed.iter().map(|i| i + 1))
            .chain(overrides.iter().map(|(i, _)| i + 1))
            .max()
            .unwrap_or(0);
        let fallback = if allowed.is_empty() {
            score_threshold
        } else {
            f32::INFINITY
        };
        let mut per_class = vec![fallback; len];
        for &id in &allowed {
            per_class[id] = score_threshold;
        }
        for &(id, t) in &overrides {
            if per_class[id].is_finite() {
                per_class[id] = t;
            }
        }
        Ok(Self { per_class, fallback })
    }

    #[inline]
    pub fn threshold(&self, class_id: usize) -> f32 {
        *self.per_class.get(class_id).unwrap_or(&self.fallback)
    }
}

/// Everything between a model's output tensors and a frame's detections.
#[derive(Debug, Clone, PartialEq)]
pub struct PostProcess {
    pub gate: ClassGate,
    /// Boxes of one class overlapping a kept box by more than this are dropped.
    pub iou_threshold: f32,
    pub max_detections: usize,
}

impl PostProcess {
    /// Decodes the outputs (`get(i)`: shape and data of output `i`), keeps what passes the gate and NMS, into
    /// `out` (cleared first; boxes normalised to the tensor). Reuses `out`'s allocation.
    pub fn run<'a>(
        &self,
        decoder: &Decoder,
        get: impl Fn(usize) -> Result<(&'a [i64], &'a [f32]), String>,
        out: &mut Vec<Detection>,
    ) -> Result<(), String> {
        out.clear();
        decoder.decode(get, &self.gate, out)?;
        nms_in_place(out, self.iou_threshold, self.max_detections);
        Ok(())
    }
}
