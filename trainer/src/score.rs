//! `score`: accuracy of a pipeline run from two `detectionjson` logs of the same frames, one written with
//! `source=ground-truth` and one with `source=detections`.

use crate::evaluate::{Report, report};
use detection_common::jsonline::{RecordBox, read_log};
use detection_common::labels::Labels;
use detection_common::map::{GroundTruth, Prediction};
use detection_common::mot::{MotFrame, TrackedBox, mot_metrics};
use detection_common::track::{GreedyIouTracker, TrackInput};

/// Which identities the tracking figures use.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Tracking {
    /// The `track_id`s in the detections log.
    FromLog,
    /// Greedy IoU matching frame to frame (GStreamer's `ioutracker` method) of the detections at or above
    /// `min_confidence`.
    GreedyIou { min_iou: f32, min_confidence: f32 },
}
use std::collections::BTreeMap;
use std::path::Path;

/// The same report as `eval` (VOC mAP@0.5, COCO mAP@[.5:.95], per class) over the frames of the truth log;
/// classes are matched by label, numbered in order of appearance. When every ground-truth box has a `track_id`
/// (`detecttestsrc`) and the detections carry them (through `detectiontrack`), the report also holds IDF1, MOTA
/// and identity switches (IoU 0.5, same class) of the tracked detections. With `tracker`, the detections are
/// tracked again by that method instead (e.g. the greedy-IoU baseline) for comparison.
pub fn score(truth: &Path, detections: &Path, tracker: Tracking) -> Result<Report, String> {
    let (t, d) = (read_log(truth)?, read_log(detections)?);
    let mut ids: BTreeMap<String, u32> = BTreeMap::new();
    let mut id_of = |label: &str| {
        let n = ids.len() as u32 + 1;
        *ids.entry(label.to_string()).or_insert(n)
    };
    let (mut gts, mut preds) = (Vec::new(), Vec::new());
    for (frame, boxes) in &t {
        for b in boxes {
            gts.push(GroundTruth {
                image: *frame as usize,
                class_id: id_of(&b.label),
                bbox: b.bbox,
                difficult: false,
            });
        }
    }
    for (frame, boxes) in &d {
        for b in boxes {
            preds.push(Prediction {
                image: *frame as usize,
                class_id: id_of(&b.label),
                score: b.confidence,
                bbox: b.bbox,
            });
        }
    }
    let mut names: Vec<(u32, String)> = ids.iter().map(|(l, i)| (*i, l.clone())).collect();
    names.sort();
    let labels = Labels::from_names(names.into_iter().map(|(_, l)| l).collect());
    let mut out = report(&gts, &preds, &labels, t.len());
    let mut d = d;
    if let Tracking::GreedyIou {
        min_iou,
        min_confidence,
    } = tracker
    {
        // Re-track the detections the way GStreamer's ioutracker does: confident boxes, greedy IoU matching
        // to the previous frame's boxes, no motion model, no memory.
        let mut greedy = GreedyIouTracker::new(min_iou);
        let mut last = None;
        for (frame, boxes) in d.iter_mut() {
            if last.is_some_and(|l: u64| frame - l > 1) {
                // A frame with no line is a frame without detections.
                greedy.update(&[]);
            }
            last = Some(*frame);
            boxes.retain(|b| b.confidence >= min_confidence);
            let inputs: Vec<TrackInput> = boxes
                .iter()
                .map(|b| TrackInput {
                    class_id: ids[&b.label],
                    score: b.confidence,
                    bbox: b.bbox,
                })
                .collect();
            for (b, id) in boxes.iter_mut().zip(greedy.update(&inputs)) {
                b.track_id = id;
            }
        }
    }
    let truth_tracked = t.values().flatten().next().is_some() && t.values().flatten().all(|b| b.track_id.is_some());
    let detections_tracked = d.values().flatten().any(|b| b.track_id.is_some());
    if truth_tracked && detections_tracked {
        // The tracker's output: the boxes it gave an id (the others were too weak to track).
        let tracked = |boxes: Option<&Vec<RecordBox>>| -> Vec<TrackedBox> {
            boxes
                .into_iter()
                .flatten()
                .filter_map(|b| {
                    Some(TrackedBox {
                        id: b.track_id?,
                        class_id: ids[&b.label],
                        bbox: b.bbox,
                    })
                })
                .collect()
        };
        let frames: Vec<MotFrame> = t
            .keys()
            .map(|f| MotFrame {
                truth: tracked(t.get(f)),
                tracks: tracked(d.get(f)),
            })
            .collect();
        out.tracking = Some(mot_metrics(&frames, 0.5));
    }
    Ok(out)
}
