//! Tracking accuracy: CLEAR MOT (MOTA, identity switches) and the identity F1 score (IDF1) of tracked boxes
//! against ground truth with identities.

use crate::BBox;
use crate::assignment::assign;
use std::collections::HashMap;

/// One box of one frame with its identity.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TrackedBox {
    pub id: u64,
    pub class_id: u32,
    pub bbox: BBox,
}

/// The ground truth and the tracker's boxes of one frame.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MotFrame {
    pub truth: Vec<TrackedBox>,
    pub tracks: Vec<TrackedBox>,
}

#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct MotMetrics {
    /// 1 - (misses + false positives + identity switches) / ground-truth boxes.
    pub mota: f32,
    /// 2 IDTP / (ground-truth boxes + tracked boxes), IDTP from the best one-to-one mapping of identities.
    pub idf1: f32,
    pub id_switches: usize,
    pub misses: usize,
    pub false_positives: usize,
    pub ground_truths: usize,
    pub predictions: usize,
    /// Distinct ground-truth identities and track identities.
    pub truth_ids: usize,
    pub track_ids: usize,
}

fn overlap(a: &TrackedBox, b: &TrackedBox, min_iou: f32) -> Option<f32> {
    if a.class_id != b.class_id {
        return None;
    }
    let iou = a.bbox.iou(&b.bbox);
    (iou >= min_iou && iou > 0.0).then_some(iou)
}

/// MOTA, identity switches and IDF1 over `frames`, a box matching a ground-truth box when they are of the same
/// class and overlap by at least `min_iou`.
pub fn mot_metrics(frames: &[MotFrame], min_iou: f32) -> MotMetrics {
    let mut m = MotMetrics::default();
    // CLEAR MOT: per-frame optimal matching that prefers the previous frame's correspondences.
    let mut last_match: HashMap<u64, u64> = HashMap::new();
    // IDF1: frames in which each (truth id, track id) pair overlaps.
    let mut together: HashMap<(u64, u64), usize> = HashMap::new();
    let (mut truth_ids, mut track_ids) = (Vec::new(), Vec::new());
    for f in frames {
        m.ground_truths += f.truth.len();
        m.predictions += f.tracks.len();
        truth_ids.extend(f.truth.iter().map(|t| t.id));
        track_ids.extend(f.tracks.iter().map(|t| t.id));
        let mut costs = Vec::with_capacity(f.truth.len() * f.tracks.len());
        for g in &f.truth {
            for h in &f.tracks {
                let cost = match overlap(g, h, min_iou) {
                    Some(iou) => {
                        *together.entry((g.id, h.id)).or_default() += 1;
                        let kept = last_match.get(&g.id) == Some(&h.id);
                        1.0 - iou as f64 - if kept { 1.0 } else { 0.0 }
                    }
                    None => 1e6,
                };
                costs.push(cost);
            }
        }
        let a = assign(&costs, f.truth.len(), f.tracks.len());
        let mut matched = 0;
        for (gi, col) in a.iter().enumerate() {
            match col {
                Some(c) if costs[gi * f.tracks.len() + c] < 1e5 => {
                    matched += 1;
                    let (g, h) = (f.truth[gi].id, f.tracks[*c].id);
                    if last_match.insert(g, h).is_some_and(|previous| previous != h) {
                        m.id_switches += 1;
                    }
                }
                _ => m.misses += 1,
            }
        }
        m.false_positives += f.tracks.len() - matched;
    }
    truth_ids.sort_unstable();
    truth_ids.dedup();
    track_ids.sort_unstable();
    track_ids.dedup();
    m.truth_ids = truth_ids.len();
    m.track_ids = track_ids.len();
    // The identity mapping that maximises the frames explained (IDTP).
    let (rows, cols) = (truth_ids.len(), track_ids.len());
    let mut costs = vec![0.0; rows * cols];
    for (&(g, h), &n) in &together {
        let (r, c) = (
            truth_ids.binary_search(&g).expect("seen"),
            track_ids.binary_search(&h).expect("seen"),
        );
        costs[r * cols + c] = -(n as f64);
    }
    let idtp: f64 = assign(&costs, rows, cols)
        .iter()
        .enumerate()
        .filter_map(|(r, c)| c.map(|c| -costs[r * cols + c]))
        .sum();
    let total = (m.ground_truths + m.predictions) as f64;
    m.idf1 = if total > 0.0 { (2.0 * idtp / total) as f32 } else { 0.0 };
    m.mota = if m.ground_truths > 0 {
        1.0 - (m.misses + m.false_positives + m.id_switches) as f32 / m.ground_truths as f32
    } else {
        0.0
    };
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(id: u64, x: f32) -> TrackedBox {
        TrackedBox {
            id,
            class_id: 1,
            bbox: BBox::new(x, 0.0, x + 10.0, 10.0),
        }
    }

    #[test]
    fn perfect_tracking_scores_one() {
        let frames: Vec<MotFrame> = (0..10)
            .map(|f| MotFrame {
                truth: vec![b(1, f as f32), b(2, 50.0)],
                tracks: vec![b(7, f as f32), b(9, 50.0)],
            })
            .collect();
        let m = mot_metrics(&frames, 0.5);
        assert_eq!((m.mota, m.idf1, m.id_switches), (1.0, 1.0, 0));
        assert_eq!((m.truth_ids, m.track_ids), (2, 2));
    }

    #[test]
    fn an_identity_switch_halfway_costs_idf1_and_one_switch() {
        // Object 1 is track 7 for 5 frames, then track 8 for 5.
        let frames: Vec<MotFrame> = (0..10)
            .map(|f| MotFrame {
                truth: vec![b(1, 0.0)],
                tracks: vec![b(if f < 5 { 7 } else { 8 }, 0.0)],
            })
            .collect();
        let m = mot_metrics(&frames, 0.5);
        assert_eq!(m.id_switches, 1);
        assert!((m.mota - 0.9).abs() < 1e-6, "{m:?}");
        // IDTP 5 of 10 truth and 10 track boxes.
        assert!((m.idf1 - 0.5).abs() < 1e-6, "{m:?}");
    }

    #[test]
    fn misses_and_false_positives_count() {
        let frames = vec![
            MotFrame {
                truth: vec![b(1, 0.0), b(2, 50.0)],
                tracks: vec![b(1, 0.0), b(3, 100.0)],
            },
            MotFrame {
                truth: vec![b(1, 0.0)],
                tracks: vec![],
            },
        ];
        let m = mot_metrics(&frames, 0.5);
        assert_eq!((m.misses, m.false_positives, m.ground_truths), (2, 1, 3));
        assert!((m.mota - 0.0).abs() < 1e-6);
        // IDTP 1 (1<->1 once) of 3 + 2 boxes.
        assert!((m.idf1 - 0.4).abs() < 1e-6, "{m:?}");
    }
}
