//! Where a training step's time goes: backbone forward (no autodiff), full forward, loss, backward, optimizer.
use burn::module::Module;
use burn::optim::{AdamWConfig, GradientsParams};
use burn::tensor::{Device, Tensor};
use mobilenet_trainer::loss::{Target, anchor_corners, batch_targets, multibox_loss};
use mobilenet_trainer::model::SsdLiteConfig;
use std::time::Instant;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let size: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(224);
    let width: f32 = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(1.0);
    let batch: usize = args.get(3).and_then(|a| a.parse().ok()).unwrap_or(16);
    let cfg = SsdLiteConfig {
        num_classes: 6,
        width,
        input_size: size,
    };
    let device = Device::flex().autodiff();
    let mut model = cfg.init(&device);
    let anchors = cfg.anchors();
    let corners = anchor_corners(&anchors);
    let targets: Vec<Vec<Target>> = (0..batch)
        .map(|i| {
            vec![Target {
                bbox: detection_common::BBox::new(0.1, 0.2, 0.4 + 0.01 * i as f32, 0.6),
                class_id: 1 + i % 5,
            }]
        })
        .collect();
    let mut opt = AdamWConfig::new().init();
    for round in 0..3 {
        let x = Tensor::<4>::random([batch, 3, size, size], burn::tensor::Distribution::Default, &device);
        let t = Instant::now();
        let (a, b) = model.backbone.valid().forward(x.clone().inner());
        let _ = (a.into_data(), b.into_data());
        let t_bb = t.elapsed();
        let t = Instant::now();
        let bt = batch_targets(&anchors, &corners, &targets, &device);
        let t_match = t.elapsed();
        let t = Instant::now();
        let (loc, logits) = model.forward_frozen_backbone(x.clone());
        let (loss, _, _) = multibox_loss(loc, logits, &bt);
        let t_fl = t.elapsed();
        let t = Instant::now();
        let grads = loss.backward();
        let g = GradientsParams::from_grads(grads, &model);
        let t_bw = t.elapsed();
        let t = Instant::now();
        model = opt.step(1e-3, model, g);
        let t_opt = t.elapsed();
        let t = Instant::now();
        let (loc, logits) = model.forward(x);
        let (loss, _, _) = multibox_loss(loc, logits, &bt);
        let grads = loss.backward();
        let g = GradientsParams::from_grads(grads, &model);
        model = opt.step(1e-3, model, g);
        let t_full = t.elapsed();
        println!(
            "round {round}: backbone fwd {:?} | match {:?} | frozen fwd+loss {:?} backward {:?} opt {:?} | full step {:?}",
            t_bb, t_match, t_fl, t_bw, t_opt, t_full
        );
    }
}
