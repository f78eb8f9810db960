//! Fine-tuning a detector on other labels: which of its class rows each of the data's classes takes (matched by
//! name), and carrying those rows into the new classification heads.

use crate::import::set_conv;
use crate::model::SeparableHead;
use burn::tensor::{Tensor, TensorData};
use detection_common::labels::Labels;
use std::path::Path;

/// For each of the data's classes (`new`, the background first), its row in a model trained on `old` labels
/// (`None`: a class new to the model at `path`); says which labels start afresh and which the model loses.
pub fn class_rows(path: &Path, old: &Labels, new: &Labels) -> Vec<Option<usize>> {
    let rows: Vec<Option<usize>> = std::iter::once(Some(0))
        .chain(new.foreground().iter().map(|name| old.id_of(name)))
        .collect();
    // The labels of `a` that `b` does not have.
    let missing = |a: &Labels, b: &Labels| -> Vec<String> {
        a.foreground()
            .iter()
            .filter(|n| b.id_of(n).is_none())
            .cloned()
            .collect()
    };
    let (fresh, dropped) = (missing(new, old), missing(old, new));
    if !fresh.is_empty() {
        eprintln!(
            "classes new to {}: {} (their rows start afresh)",
            path.display(),
            fresh.join(", ")
        );
    }
    if !dropped.is_empty() {
        eprintln!(
            "note: {} detects {}, which the data does not label: the new model will not",
            path.display(),
            dropped.join(", ")
        );
    }
    rows
}

/// Makes `head` (freshly initialised for the data's classes) `old` with other classes: the depthwise layer
/// carries over and, on every anchor slot, class `c` takes the output row of class `old_class[c]` in `old`
/// (`None`: a new class keeps its fresh rows).
pub fn carry_classes(head: &mut SeparableHead, old: SeparableHead, old_class: &[Option<usize>]) {
    assert_eq!(old_class.len(), head.width, "one entry per class");
    let host = |t: Tensor<4>| t.into_data().try_to_vec::<f32>().expect("f32 weights");
    let bias_of = |h: &SeparableHead, rows: usize| {
        h.pointwise.bias.as_ref().map_or_else(
            || vec![0.0; rows],
            |b| b.val().into_data().try_to_vec::<f32>().expect("f32 biases"),
        )
    };
    let [out, cin, kh, kw] = head.pointwise.weight.dims();
    let row = cin * kh * kw;
    let device = head.pointwise.weight.device();
    let (mut weight, mut bias) = (host(head.pointwise.weight.val()), bias_of(head, out));
    let old_weight = host(old.pointwise.weight.val());
    let old_bias = bias_of(&old, old_weight.len() / row);
    for slot in 0..out / head.width {
        for (c, o) in old_class.iter().enumerate() {
            let Some(o) = *o else { continue };
            let (to, from) = (slot * head.width + c, slot * old.width + o);
            weight[to * row..(to + 1) * row].copy_from_slice(&old_weight[from * row..(from + 1) * row]);
            bias[to] = old_bias[from];
        }
    }
    let weight = Tensor::from_data(TensorData::new(weight, [out, cin, kh, kw]), &device);
    set_conv(&mut head.pointwise, weight, &bias, &device);
    head.depthwise = old.depthwise;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ANCHORS_PER_LOCATION, SsdLite, SsdLiteConfig};
    use burn::tensor::Device;

    /// A model fine-tuned on other labels: (background, a, b) -> (background, b, c).
    #[test]
    fn carried_classes_keep_their_logits_and_a_new_class_its_fresh_rows() {
        let device = Device::flex();
        let cfg = SsdLiteConfig {
            num_classes: 3,
            width: 0.35,
            input_size: 96,
            anchor_shapes: None,
            variant: Default::default(),
        };
        let old = cfg.init(&device);
        let mut new = cfg.init(&device);
        let first_head = |m: &SsdLite| {
            m.cls_heads[0]
                .pointwise
                .weight
                .val()
                .into_data()
                .try_to_vec::<f32>()
                .unwrap()
        };
        let fresh = first_head(&new);
        new.backbone = old.backbone.clone();
        new.extras = old.extras.clone();
        new.loc_heads = old.loc_heads.clone();
        for (head, o) in new.cls_heads.iter_mut().zip(old.cls_heads.clone()) {
            carry_classes(head, o, &[Some(0), Some(2), None]);
        }
        let x = Tensor::<4>::random([1, 3, 96, 96], burn::tensor::Distribution::Default, &device);
        let logits = |m: &SsdLite| m.forward(x.clone()).1.into_data().try_to_vec::<f32>().unwrap();
        let (before, after) = (logits(&old), logits(&new));
        for (o, n) in before.chunks(3).zip(after.chunks(3)) {
            assert!(
                (o[0] - n[0]).abs() < 1e-5 && (o[2] - n[1]).abs() < 1e-5,
                "{o:?} -> {n:?}"
            );
        }
        // The new class: its fresh rows on every anchor slot of the head, untouched.
        let carried = first_head(&new);
        let row = carried.len() / (ANCHORS_PER_LOCATION[0] * 3);
        for slot in 0..ANCHORS_PER_LOCATION[0] {
            let c = (slot * 3 + 2) * row;
            assert_eq!(carried[c..c + row], fresh[c..c + row]);
        }
    }
}
