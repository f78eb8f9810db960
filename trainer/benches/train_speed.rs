//! Training speed of the default model on this machine, per recipe, as images/s (`cargo bench -p
//! mobilenet-trainer --bench train_speed -- [INPUT_SIZE] [BATCH]`); `benchmarks/train_speed` runs it beside the
//! PyTorch reference (`benchmarks/pytorch_reference.py`) and prints the ratios.
//!
//! Lines: `features` (backbone forward, no autodiff: the cost of caching features), then the recipes `full` (the whole network learns), `frozen` (backbone forward without autodiff, extras and heads
//! learn), `cached` (extras and heads on cached backbone features: the trainer's default from ImageNet).
//! Inputs are seeded random images with one object each; matching and the MultiBox loss are the trainer's.

use burn::module::Module;
use burn::optim::AdamWConfig;
use burn::tensor::{Device, Distribution, Tensor};
use detection_common::BBox;
use mobilenet_trainer::loss::{Target, anchor_corners, batch_targets};
use mobilenet_trainer::model::SsdLiteConfig;
use mobilenet_trainer::step::{StepOptions, train_step, train_step_on_features};
use std::time::Instant;

fn main() {
    // cargo bench passes --bench; numbers are the positional arguments.
    let nums: Vec<usize> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    let size = nums.first().copied().unwrap_or(160);
    let batch = nums.get(1).copied().unwrap_or(16);
    let cfg = SsdLiteConfig {
        num_classes: 6,
        width: 1.0,
        input_size: size,
        anchor_shapes: None,
    };
    let device = Device::flex().autodiff();
    let anchors = cfg.anchors();
    let corners = anchor_corners(&anchors);
    let targets: Vec<Vec<Target>> = (0..batch)
        .map(|i| {
            let o = 0.02 * (i % 10) as f32;
            vec![Target {
                bbox: BBox::new(0.1 + o, 0.2, 0.45 + o, 0.6),
                class_id: 1 + i % 5,
            }]
        })
        .collect();
    let bt = batch_targets(&anchors, &corners, &targets, &device);
    println!("burn flex, MobileNetV2-SSDLite width 1.0, input {size}x{size}, batch {batch}, AdamW");
    {
        // Backbone features without autodiff: what building the feature cache costs per image.
        let model = cfg.init(&Device::flex());
        let images = Tensor::<4>::random([batch, 3, size, size], Distribution::Default, &Device::flex());
        let mut times = Vec::new();
        for step in 0..=4 {
            let started = Instant::now();
            let (a, b) = model.backbone.forward(images.clone());
            let _ = (a.into_data(), b.into_data());
            if step > 0 {
                times.push(started.elapsed().as_secs_f64());
            }
        }
        times.sort_by(f64::total_cmp);
        let median = times[times.len() / 2];
        println!(
            "{:<8} {:>8.2} images/s  ({median:.3} s/batch)",
            "features",
            batch as f64 / median
        );
    }
    for recipe in ["full", "frozen", "cached"] {
        let mut model = cfg.init(&device);
        let mut optimizer = AdamWConfig::new().init();
        let images = Tensor::<4>::random([batch, 3, size, size], Distribution::Default, &device);
        let (f16, f32_) = model.backbone.valid().forward(images.clone().inner());
        let (f16, f32_) = (f16.autodiff(), f32_.autodiff());
        let steps = if recipe == "full" { 3 } else { 6 };
        let mut times = Vec::new();
        // One warm-up step, then timed steps (the median is printed).
        for step in 0..=steps {
            let started = Instant::now();
            let (m, loss) = match recipe {
                "cached" => train_step_on_features(model, &mut optimizer, 1e-3, f16.clone(), f32_.clone(), &bt),
                _ => {
                    let opts = StepOptions {
                        lr: 1e-3,
                        backbone_lr: 1e-4,
                        frozen_backbone: recipe == "frozen",
                    };
                    train_step(model, &mut optimizer, opts, images.clone(), &bt)
                }
            };
            model = m;
            assert!(loss.total.is_finite());
            if step > 0 {
                times.push(started.elapsed().as_secs_f64());
            }
        }
        times.sort_by(f64::total_cmp);
        let median = times[times.len() / 2];
        println!(
            "{recipe:<8} {:>8.2} images/s  ({:.3} s/step)",
            batch as f64 / median,
            median
        );
    }
}
