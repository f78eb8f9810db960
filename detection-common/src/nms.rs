//! Score filtering and class-aware greedy non-maximum suppression.

use crate::BBox;

/// One detection: `bbox` in normalised model-input coordinates until mapped to the frame.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Detection {
    pub class_id: u32,
    pub score: f32,
    pub bbox: BBox,
}

/// Adds a candidate as a model gave it, if usable: kept only with a finite score and a finite box, the box
/// clamped to the image (0..1), and only if something of the box is left. Models can emit NaN, infinities or
/// boxes outside the image (a broken export, fp16 overflow): none of that may reach metadata or a score. The
/// element's decoders and the trainer's evaluation both go through here, so both count the same boxes.
#[inline]
pub fn push_candidate(out: &mut Vec<Detection>, class_id: usize, score: f32, bbox: BBox) {
    if !score.is_finite() || ![bbox.x0, bbox.y0, bbox.x1, bbox.y1].iter().all(|v| v.is_finite()) {
        return;
    }
    // A class id no label set reaches (a tf-od class output of 1e30) is a broken output, not a class.
    if class_id > crate::labels::MAX_CLASS_ID {
        return;
    }
    let bbox = bbox.clamp(0.0, 1.0, 1.0);
    if bbox.x1 <= bbox.x0 || bbox.y1 <= bbox.y0 {
        return;
    }
    out.push(Detection {
        class_id: class_id as u32,
        score,
        bbox,
    });
}

/// Class-aware NMS in place: sorts by score (descending), keeps a box unless a kept box of the same class
/// overlaps it by more than `iou_threshold`, and stops after `max_detections`. Allocation-free.
pub fn nms_in_place(dets: &mut Vec<Detection>, iou_threshold: f32, max_detections: usize) {
    dets.sort_unstable_by(|a, b| b.score.total_cmp(&a.score).then(a.class_id.cmp(&b.class_id)));
    let mut kept = 0usize;
    for i in 0..dets.len() {
        if kept >= max_detections {
            break;
        }
        let cand = dets[i];
        let suppressed = dets[..kept]
            .iter()
            .any(|k| k.class_id == cand.class_id && k.bbox.iou(&cand.bbox) > iou_threshold);
        if !suppressed {
            dets[kept] = cand;
            kept += 1;
        }
    }
    dets.truncate(kept);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn det(class_id: u32, score: f32, x0: f32) -> Detection {
        Detection {
            class_id,
            score,
            bbox: BBox::new(x0, 0.0, x0 + 1.0, 1.0),
        }
    }

    #[test]
    fn suppresses_overlaps_within_a_class_only() {
        let mut d = vec![det(1, 0.6, 0.05), det(1, 0.9, 0.0), det(2, 0.8, 0.0), det(1, 0.7, 3.0)];
        nms_in_place(&mut d, 0.45, 10);
        assert_eq!(d, vec![det(1, 0.9, 0.0), det(2, 0.8, 0.0), det(1, 0.7, 3.0)]);
    }

    #[test]
    fn caps_the_number_of_detections() {
        let mut d: Vec<_> = (0..10).map(|i| det(1, i as f32 / 10.0, i as f32 * 2.0)).collect();
        nms_in_place(&mut d, 0.5, 3);
        assert_eq!(d.iter().map(|d| d.score).collect::<Vec<_>>(), vec![0.9, 0.8, 0.7]);
    }
}
