//! Anchor shapes fitted to the training boxes. SSD's default shapes are generic (scales 0.2 to 0.95, fixed
//! ratios); a dataset's objects occupy a narrower band of sizes and aspects. Each box goes to the map whose SSD
//! scale is nearest its size, and a map with enough boxes gets its shapes by k-means on them with 1 - IoU as
//! the distance (the YOLO recipe), so its anchors match the objects it has to find. The shapes are part of the
//! model: the checkpoint and the export's metadata carry them.

use crate::model::{ANCHORS_PER_LOCATION, AnchorShapes};
use detection_common::boxes::{ssd_anchor_shapes, ssd_scale};
use detection_common::voc::Sample;

/// Boxes a map needs per shape before its shapes are fitted (fewer keep SSD's).
const BOXES_PER_SHAPE: usize = 8;
const ITERATIONS: usize = 50;

/// The boxes of `samples` as normalised `(w, h)`: their shape in the network's square input.
pub fn box_shapes(samples: &[Sample]) -> Vec<(f32, f32)> {
    samples
        .iter()
        .flat_map(|s| {
            let (w, h) = (s.annotation.width.max(1) as f32, s.annotation.height.max(1) as f32);
            s.annotation
                .objects
                .iter()
                .map(move |o| ((o.xmax - o.xmin) / w, (o.ymax - o.ymin) / h))
        })
        .filter(|&(w, h)| w > 0.0 && h > 0.0 && w.is_finite() && h.is_finite())
        .collect()
}

/// Shapes per map fitted to `boxes` (normalised `(w, h)`); maps with too few boxes keep SSD's shapes.
pub fn fit(boxes: &[(f32, f32)]) -> AnchorShapes {
    let maps = ANCHORS_PER_LOCATION.len();
    let mut shapes = ssd_anchor_shapes(maps, &ANCHORS_PER_LOCATION);
    let scales: Vec<f32> = (0..maps).map(|k| ssd_scale(k, maps).ln()).collect();
    let mut per_map: Vec<Vec<(f32, f32)>> = vec![Vec::new(); maps];
    for &(w, h) in boxes {
        let size = (w * h).sqrt().ln();
        let k = (0..maps)
            .min_by(|&a, &b| (scales[a] - size).abs().total_cmp(&(scales[b] - size).abs()))
            .unwrap_or(0);
        per_map[k].push((w, h));
    }
    for (k, boxes) in per_map.iter().enumerate() {
        if boxes.len() >= BOXES_PER_SHAPE * ANCHORS_PER_LOCATION[k] {
            shapes[k] = kmeans(boxes, ANCHORS_PER_LOCATION[k]);
        }
    }
    shapes
}

/// IoU of two shapes placed on the same centre.
fn centred_iou(a: (f32, f32), b: (f32, f32)) -> f32 {
    let inter = a.0.min(b.0) * a.1.min(b.1);
    inter / (a.0 * a.1 + b.0 * b.1 - inter)
}

/// `k` shapes for `boxes` (at least `k` of them): k-means with 1 - IoU as distance and medians as centres,
/// started from boxes spread over the sizes; deterministic.
fn kmeans(boxes: &[(f32, f32)], k: usize) -> Vec<(f32, f32)> {
    let mut sorted = boxes.to_vec();
    sorted.sort_by(|a, b| (a.0 * a.1).total_cmp(&(b.0 * b.1)).then(a.0.total_cmp(&b.0)));
    let mut centres: Vec<(f32, f32)> = (0..k).map(|i| sorted[(2 * i + 1) * sorted.len() / (2 * k)]).collect();
    let mut members: Vec<Vec<(f32, f32)>> = vec![Vec::new(); k];
    for _ in 0..ITERATIONS {
        members.iter_mut().for_each(Vec::clear);
        for &b in &sorted {
            let nearest = (0..k)
                .max_by(|&i, &j| centred_iou(b, centres[i]).total_cmp(&centred_iou(b, centres[j])))
                .unwrap_or(0);
            members[nearest].push(b);
        }
        let mut moved = false;
        for (c, m) in centres.iter_mut().zip(&members) {
            if m.is_empty() {
                continue;
            }
            let next = (median(m.iter().map(|b| b.0)), median(m.iter().map(|b| b.1)));
            moved |= next != *c;
            *c = next;
        }
        if !moved {
            break;
        }
    }
    centres.sort_by(|a, b| (a.0 * a.1).total_cmp(&(b.0 * b.1)));
    centres
}

fn median(values: impl Iterator<Item = f32>) -> f32 {
    let mut v: Vec<f32> = values.collect();
    v.sort_by(f32::total_cmp);
    v[v.len() / 2]
}

/// The mean over `boxes` of the best IoU any shape of `shapes` reaches on the same centre: how well a set of
/// shapes can fit the objects (1.0: a shape for every box).
pub fn mean_best_iou(boxes: &[(f32, f32)], shapes: &AnchorShapes) -> f32 {
    if boxes.is_empty() {
        return 0.0;
    }
    let all: Vec<(f32, f32)> = shapes.iter().flatten().copied().collect();
    let total: f32 = boxes
        .iter()
        .map(|&b| all.iter().map(|&s| centred_iou(b, s)).fold(0.0, f32::max))
        .sum();
    total / boxes.len() as f32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fitted_shapes_cover_the_boxes_better_than_ssds() {
        // Squares of 0.12 to 0.4 seen through a 4:3 frame (w < h), the demo's objects.
        let boxes: Vec<(f32, f32)> = (0..400)
            .map(|i| {
                let side = 0.16 + 0.36 * (i as f32 / 399.0);
                (side * 0.75, side)
            })
            .collect();
        let fitted = fit(&boxes);
        let ssd = ssd_anchor_shapes(ANCHORS_PER_LOCATION.len(), &ANCHORS_PER_LOCATION);
        assert_eq!(
            fitted.iter().map(Vec::len).collect::<Vec<_>>(),
            ANCHORS_PER_LOCATION.to_vec(),
            "as many shapes per map as the heads predict"
        );
        let (f, s) = (mean_best_iou(&boxes, &fitted), mean_best_iou(&boxes, &ssd));
        assert!(f > 0.9 && f > s + 0.05, "fitted {f} vs SSD {s}");
        // Maps without boxes keep SSD's shapes.
        assert_eq!(fitted[5], ssd[5]);
        // The same boxes give the same shapes.
        assert_eq!(fit(&boxes), fitted);
        // Too few boxes: SSD's shapes everywhere.
        assert_eq!(fit(&boxes[..5]), ssd);
    }
}
