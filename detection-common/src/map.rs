//! Detection accuracy: Pascal VOC mAP@0.5 (all-point interpolated AP, VOC2010+) and COCO-style mAP@[.5:.95],
//! with per-class AP and precision/recall curves. The trainer's `eval` and the end-to-end tests use it.

use crate::BBox;
use std::collections::BTreeMap;

/// A ground-truth object of image `image`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GroundTruth {
    pub image: usize,
    pub class_id: u32,
    pub bbox: BBox,
    /// VOC "difficult": neither missed nor matched.
    pub difficult: bool,
}

/// A detection on image `image`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Prediction {
    pub image: usize,
    pub class_id: u32,
    pub score: f32,
    pub bbox: BBox,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ClassResult {
    pub ap: f32,
    pub ground_truths: usize,
    pub predictions: usize,
    /// (recall, precision) after each prediction, by falling score.
    pub curve: Vec<(f32, f32)>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Evaluation {
    pub iou_threshold: f32,
    /// Mean AP over the classes that have ground truth.
    pub map: f32,
    pub classes: BTreeMap<u32, ClassResult>,
}

/// All-point interpolated average precision: the area under the precision envelope.
pub fn average_precision(curve: &[(f32, f32)]) -> f32 {
    let mut recall = vec![0.0];
    let mut precision = vec![0.0];
    for &(r, p) in curve {
        recall.push(r);
        precision.push(p);
    }
    recall.push(1.0);
    precision.push(0.0);
    for i in (0..precision.len() - 1).rev() {
        precision[i] = precision[i].max(precision[i + 1]);
    }
    (1..recall.len())
        .map(|i| (recall[i] - recall[i - 1]) * precision[i])
        .sum()
}

/// Evaluates at one IoU threshold.
pub fn evaluate(ground_truth: &[GroundTruth], predictions: &[Prediction], iou_threshold: f32) -> Evaluation {
    let mut classes = BTreeMap::new();
    let class_ids: std::collections::BTreeSet<u32> = ground_truth.iter().map(|g| g.class_id).collect();
    for &class_id in &class_ids {
        let gts: Vec<&GroundTruth> = ground_truth.iter().filter(|g| g.class_id == class_id).collect();
        let counted = gts.iter().filter(|g| !g.difficult).count();
        let mut preds: Vec<&Prediction> = predictions.iter().filter(|p| p.class_id == class_id).collect();
        preds.sort_by(|a, b| b.score.total_cmp(&a.score));
        let mut matched = vec![false; gts.len()];
        let (mut tp, mut fp) = (0usize, 0usize);
        let mut curve = Vec::with_capacity(preds.len());
        for p in &preds {
            let best = gts
                .iter()
                .enumerate()
                .filter(|(_, g)| g.image == p.image)
                .map(|(i, g)| (i, g.bbox.iou(&p.bbox)))
                .max_by(|a, b| a.1.total_cmp(&b.1));
            match best {
                Some((i, iou)) if iou >= iou_threshold => {
                    if gts[i].difficult {
                        continue;
                    }
                    if matched[i] {
                        fp += 1;
                    } else {
                        matched[i] = true;
                        tp += 1;
                    }
                }
                _ => fp += 1,
            }
            let recall = if counted == 0 { 0.0 } else { tp as f32 / counted as f32 };
            curve.push((recall, tp as f32 / (tp + fp) as f32));
        }
        let ap = if counted == 0 { 0.0 } else { average_precision(&curve) };
        classes.insert(
            class_id,
            ClassResult {
                ap,
                ground_truths: counted,
                predictions: preds.len(),
                curve,
            },
        );
    }
    let with_gt: Vec<f32> = classes.values().filter(|c| c.ground_truths > 0).map(|c| c.ap).collect();
    let map = if with_gt.is_empty() {
        0.0
    } else {
        with_gt.iter().sum::<f32>() / with_gt.len() as f32
    };
    Evaluation {
        iou_threshold,
        map,
        classes,
    }
}

/// COCO-style mAP: the mean of mAP at IoU 0.50, 0.55, ..., 0.95.
pub fn coco_map(ground_truth: &[GroundTruth], predictions: &[Prediction]) -> f32 {
    (0..10)
        .map(|i| evaluate(ground_truth, predictions, 0.5 + 0.05 * i as f32).map)
        .sum::<f32>()
        / 10.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gt(image: usize, class_id: u32, x: f32) -> GroundTruth {
        GroundTruth {
            image,
            class_id,
            bbox: BBox::new(x, 0.0, x + 1.0, 1.0),
            difficult: false,
        }
    }

    fn pred(image: usize, class_id: u32, score: f32, x: f32) -> Prediction {
        Prediction {
            image,
            class_id,
            score,
            bbox: BBox::new(x, 0.0, x + 1.0, 1.0),
        }
    }

    #[test]
    fn perfect_detections_score_one() {
        let g = [gt(0, 1, 0.0), gt(1, 1, 2.0), gt(1, 2, 5.0)];
        let p = [pred(0, 1, 0.9, 0.0), pred(1, 1, 0.8, 2.0), pred(1, 2, 0.7, 5.0)];
        assert_eq!(evaluate(&g, &p, 0.5).map, 1.0);
        assert!((coco_map(&g, &p) - 1.0).abs() < 1e-6);
    }

    #[test]
    fn hand_computed_average_precision() {
        // Two objects; ranked: hit, miss (wrong place), hit, duplicate of the first.
        let g = [gt(0, 1, 0.0), gt(1, 1, 0.0)];
        let p = [
            pred(0, 1, 0.9, 0.0),
            pred(0, 1, 0.8, 10.0),
            pred(1, 1, 0.7, 0.0),
            pred(0, 1, 0.6, 0.0),
        ];
        let e = evaluate(&g, &p, 0.5);
        let c = &e.classes[&1];
        assert_eq!(c.curve, vec![(0.5, 1.0), (0.5, 0.5), (1.0, 2.0 / 3.0), (1.0, 0.5)]);
        // Envelope: precision 1 up to recall 0.5, 2/3 up to recall 1.
        assert!((c.ap - (0.5 + 0.5 * 2.0 / 3.0)).abs() < 1e-6, "{}", c.ap);
        // A class without predictions has AP 0 and counts in the mean.
        let g2 = [gt(0, 1, 0.0), gt(0, 2, 3.0)];
        assert_eq!(evaluate(&g2, &[pred(0, 1, 0.9, 0.0)], 0.5).map, 0.5);
    }

    #[test]
    fn difficult_objects_are_neither_missed_nor_matched_and_iou_thresholds_bite() {
        let mut hard = gt(0, 1, 0.0);
        hard.difficult = true;
        let g = [hard, gt(1, 1, 0.0)];
        let p = [pred(0, 1, 0.9, 0.0), pred(1, 1, 0.8, 0.0)];
        assert_eq!(evaluate(&g, &p, 0.5).map, 1.0);
        // Shifted by 0.4 of the width: IoU 0.43, a miss at 0.5 and a hit at 0.4.
        let shifted = [pred(1, 1, 0.8, 0.4)];
        assert_eq!(evaluate(&[gt(1, 1, 0.0)], &shifted, 0.5).map, 0.0);
        assert_eq!(evaluate(&[gt(1, 1, 0.0)], &shifted, 0.4).map, 1.0);
    }
}
