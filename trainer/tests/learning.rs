//! The detector learns: on a small synthetic set (coloured squares on noise) the MultiBox loss falls quickly.

use burn::optim::AdamWConfig;
use burn::tensor::Device;
mod common;
use common::{full_step, sample_batch};
use mobilenet_trainer::loss::{anchor_corners, batch_targets};
use mobilenet_trainer::model::SsdLiteConfig;
use mobilenet_trainer::step::train_step;

#[test]
fn loss_falls_on_synthetic_squares() {
    let device = Device::flex().autodiff();
    let cfg = SsdLiteConfig {
        num_classes: 3,
        width: 0.35,
        input_size: 96,
        anchor_shapes: None,
        variant: Default::default(),
    };
    let mut model = cfg.init(&device);
    let anchors = cfg.anchors();
    let corners = anchor_corners(&anchors);
    let (images, targets) = sample_batch(8, cfg.input_size, &device);
    let batch_targets = batch_targets(&anchors, &corners, &targets, &device);
    let mut optimizer = AdamWConfig::new().init();
    let mut losses = Vec::new();
    for _ in 0..25 {
        let (m, loss) = train_step(model, &mut optimizer, full_step(3e-3), images.clone(), &batch_targets);
        model = m;
        losses.push(loss.total);
    }
    let first = losses[0];
    let last = losses[losses.len() - 3..].iter().sum::<f32>() / 3.0;
    assert!(last < 0.5 * first, "loss {first} -> {last}: {losses:?}");
}
