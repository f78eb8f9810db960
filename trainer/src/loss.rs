//! SSD training targets and the MultiBox loss: anchors matched to objects (IoU >= 0.5, plus each object's best
//! anchor), TF-style box encodings, smooth-L1 on positives and cross-entropy with 3:1 hard negative mining.

use burn::tensor::activation::log_softmax;
use burn::tensor::{Device, Int, Tensor, TensorData};
use detection_common::BBox;
use detection_common::boxes::{Anchor, BoxEncoding, encode_box};

pub const MATCH_IOU: f32 = 0.5;
pub const NEGATIVES_PER_POSITIVE: usize = 3;

/// One object of a training image: normalised corner box and class id (>= 1).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Target {
    pub bbox: BBox,
    pub class_id: usize,
}

/// Per-anchor class ids (0 = background) and box encodings for one image.
pub fn match_anchors(anchors: &[Anchor], corners: &[BBox], targets: &[Target]) -> (Vec<i64>, Vec<f32>) {
    let a = anchors.len();
    let mut labels = vec![0i64; a];
    let mut encodings = vec![0f32; a * 4];
    if targets.is_empty() {
        return (labels, encodings);
    }
    let mut best_iou = vec![0f32; a];
    let mut best_target = vec![0usize; a];
    for (t, target) in targets.iter().enumerate() {
        let mut best_anchor = (0usize, -1f32);
        for (i, c) in corners.iter().enumerate() {
            let iou = c.iou(&target.bbox);
            if iou > best_iou[i] {
                best_iou[i] = iou;
                best_target[i] = t;
            }
            if iou > best_anchor.1 {
                best_anchor = (i, iou);
            }
        }
        // Every object gets at least its best anchor, whatever the overlap.
        best_iou[best_anchor.0] = 2.0;
        best_target[best_anchor.0] = t;
    }
    for i in 0..a {
        if best_iou[i] >= MATCH_IOU {
            let t = &targets[best_target[i]];
            labels[i] = t.class_id as i64;
            encodings[i * 4..i * 4 + 4].copy_from_slice(&encode_box(&t.bbox, &anchors[i], BoxEncoding::Tf));
        }
    }
    (labels, encodings)
}

pub fn anchor_corners(anchors: &[Anchor]) -> Vec<BBox> {
    anchors
        .iter()
        .map(|a| BBox::from_center(a.cx, a.cy, a.w, a.h))
        .collect()
}

/// Batched targets as tensors.
pub struct BatchTargets {
    pub labels: Tensor<2, Int>,
    pub encodings: Tensor<3>,
    /// Host copy of the labels, for mining.
    pub labels_host: Vec<i64>,
}

pub fn batch_targets(anchors: &[Anchor], corners: &[BBox], images: &[Vec<Target>], device: &Device) -> BatchTargets {
    let a = anchors.len();
    let mut labels = Vec::with_capacity(images.len() * a);
    let mut encodings = Vec::with_capacity(images.len() * a * 4);
    for targets in images {
        let (l, e) = match_anchors(anchors, corners, targets);
        labels.extend(l);
        encodings.extend(e);
    }
    let b = images.len();
    BatchTargets {
        labels: Tensor::from_data(TensorData::new(labels.clone(), [b, a]), device),
        encodings: Tensor::from_data(TensorData::new(encodings, [b, a, 4]), device),
        labels_host: labels,
    }
}

/// (total, localisation, classification) losses, each divided by the number of positive anchors.
pub fn multibox_loss(loc: Tensor<3>, logits: Tensor<3>, targets: &BatchTargets) -> (Tensor<1>, f32, f32) {
    let [b, a, _] = logits.dims();
    let device = logits.device();
    let logp = log_softmax(logits, 2);
    let ce: Tensor<2> = logp
        .gather(2, targets.labels.clone().unsqueeze_dim(2))
        .reshape([b, a])
        .neg();

    // Hard negative mining on the host: per image, the negatives with the highest loss, 3 per positive.
    let ce_host: Vec<f32> = ce.clone().detach().into_data().try_to_vec::<f32>().expect("f32 losses");
    let mut selected = vec![0f32; b * a];
    let mut positives = vec![0f32; b * a];
    let mut num_pos = 0usize;
    for img in 0..b {
        let row = img * a..(img + 1) * a;
        let pos: usize = targets.labels_host[row.clone()].iter().filter(|l| **l > 0).count();
        num_pos += pos;
        let mut negatives: Vec<usize> = row.clone().filter(|&i| targets.labels_host[i] == 0).collect();
        let keep = (NEGATIVES_PER_POSITIVE * pos.max(1)).min(negatives.len());
        if keep > 0 && keep < negatives.len() {
            // The `keep` highest-loss negatives first (unordered among themselves).
            negatives.select_nth_unstable_by(keep - 1, |x, y| ce_host[*y].total_cmp(&ce_host[*x]));
        }
        for &i in negatives.iter().take(keep) {
            selected[i] = 1.0;
        }
        for i in row {
            if targets.labels_host[i] > 0 {
                selected[i] = 1.0;
                positives[i] = 1.0;
            }
        }
    }
    let norm = num_pos.max(1) as f32;
    let selected = Tensor::<2>::from_data(TensorData::new(selected, [b, a]), &device);
    let positives = Tensor::<2>::from_data(TensorData::new(positives, [b, a]), &device);
    let cls_loss = (ce * selected).sum().div_scalar(norm);

    // Smooth L1 (beta 1) on the positives' encodings.
    let d = (loc - targets.encodings.clone()).abs();
    let m = d.clone().clamp_max(1.0);
    let smooth = m.clone().powi_scalar(2).mul_scalar(0.5) + (d - m);
    let loc_loss = (smooth.sum_dim(2).reshape([b, a]) * positives).sum().div_scalar(norm);

    let (l, c) = (scalar(&loc_loss), scalar(&cls_loss));
    (loc_loss + cls_loss, l, c)
}

fn scalar(t: &Tensor<1>) -> f32 {
    t.clone().detach().into_data().try_to_vec::<f32>().expect("f32 scalar")[0]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_object_gets_its_best_anchor_and_overlapping_ones() {
        let anchors = vec![
            Anchor {
                cy: 0.25,
                cx: 0.25,
                h: 0.5,
                w: 0.5,
            },
            Anchor {
                cy: 0.3,
                cx: 0.3,
                h: 0.5,
                w: 0.5,
            },
            Anchor {
                cy: 0.75,
                cx: 0.75,
                h: 0.5,
                w: 0.5,
            },
            Anchor {
                cy: 0.75,
                cx: 0.75,
                h: 0.1,
                w: 0.1,
            },
        ];
        let corners = anchor_corners(&anchors);
        let targets = [
            Target {
                bbox: BBox::new(0.0, 0.0, 0.5, 0.5),
                class_id: 2,
            },
            // Tiny object: no anchor reaches 0.5 IoU, its best one is forced.
            Target {
                bbox: BBox::new(0.7, 0.7, 0.76, 0.76),
                class_id: 1,
            },
        ];
        let (labels, enc) = match_anchors(&anchors, &corners, &targets);
        assert_eq!(labels, vec![2, 2, 0, 1]);
        assert_eq!(&enc[0..4], &[0.0, 0.0, 0.0, 0.0], "exact match encodes to zero");
        assert!(enc[4] < 0.0, "anchor 1 sits below-right of its object");
    }
}
