//! `score`: accuracy of a pipeline run from two `detectionjson` logs of the same frames, one written with
//! `source=ground-truth` and one with `source=detections`.

use crate::evaluate::{Report, report};
use detection_common::BBox;
use detection_common::labels::Labels;
use detection_common::map::{GroundTruth, Prediction};
use std::collections::BTreeMap;
use std::path::Path;

struct FrameBox {
    label: String,
    confidence: f32,
    bbox: BBox,
}

/// Frame number -> boxes (normalised) read from a detectionjson log.
fn read_log(path: &Path) -> Result<BTreeMap<u64, Vec<FrameBox>>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let mut frames = BTreeMap::new();
    for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let bad = |what: &str| format!("{}:{}: {what}", path.display(), i + 1);
        let v: serde_json::Value = serde_json::from_str(line).map_err(|e| bad(&format!("not JSON: {e}")))?;
        let frame = v["frame"].as_u64().ok_or_else(|| bad("no frame number"))?;
        let mut boxes = Vec::new();
        for d in v["detections"].as_array().ok_or_else(|| bad("no detections array"))? {
            let b = &d["box"];
            let num = |k: &str| {
                b[k].as_f64()
                    .map(|x| x as f32)
                    .ok_or_else(|| bad(&format!("box has no {k}")))
            };
            boxes.push(FrameBox {
                label: d["label"]
                    .as_str()
                    .ok_or_else(|| bad("detection without label"))?
                    .to_string(),
                confidence: d["confidence"].as_f64().unwrap_or(1.0) as f32,
                bbox: BBox::new(num("x_min")?, num("y_min")?, num("x_max")?, num("y_max")?),
            });
        }
        frames.insert(frame, boxes);
    }
    Ok(frames)
}

/// The same report as `eval` (VOC mAP@0.5, COCO mAP@[.5:.95], per class) over the frames of the truth log;
/// classes are matched by label, numbered in order of appearance.
pub fn score(truth: &Path, detections: &Path) -> Result<Report, String> {
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
    let mut names: Vec<(u32, String)> = ids.into_iter().map(|(l, i)| (i, l)).collect();
    names.sort();
    let labels = Labels::from_names(names.into_iter().map(|(_, l)| l).collect());
    Ok(report(&gts, &preds, &labels, t.len()))
}
