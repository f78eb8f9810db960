//! Training speed of the default model on this machine, per recipe, as images/s (`cargo bench -p
//! mobilenet-trainer --bench train_speed -- [INPUT_SIZE] [BATCH] [RECIPE...]`, all recipes by default: naming
//! some, e.g. `cached`, runs only those, for profiling); `benchmarks/train_speed` runs it beside the
//! PyTorch reference (`benchmarks/pytorch_reference.py`) and prints the ratios.
//!
//! Lines: `features` (backbone forward, no autodiff: the cost of caching features), then the recipes `full` (the whole network learns), `frozen` (backbone forward without autodiff, extras and heads
//! learn), `cached` (extras and heads on cached backbone features: the trainer's default from ImageNet); named
//! only, `phases` splits a cached step into forward, loss, backward and optimizer times.
//! Inputs are seeded random images with one object each; matching and the MultiBox loss are the trainer's.

use burn::module::Module;
use burn::optim::AdamWConfig;
use burn::optim::GradientsParams;
use burn::tensor::{Device, Distribution, Tensor};
use detection_common::BBox;
use mobilenet_trainer::loss::{BatchTargets, Target, anchor_corners, batch_targets, multibox_loss};
use mobilenet_trainer::model::SsdLiteConfig;
use mobilenet_trainer::step::{StepOptions, train_step, train_step_on_features};
use std::time::Instant;

fn main() {
    // cargo bench passes --bench; numbers are the positional arguments.
    let nums: Vec<usize> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    let size = nums.first().copied().unwrap_or(160);
    let batch = nums.get(1).copied().unwrap_or(16);
    let named: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-') && a.parse::<usize>().is_err())
        .collect();
    let wanted = |recipe: &str| named.is_empty() || named.iter().any(|n| n == recipe);
    let cfg = SsdLiteConfig {
        num_classes: 6,
        width: 1.0,
        input_size: size,
        anchor_shapes: None,
        variant: Default::default(),
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
    if wanted("features") {
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
    if named.iter().any(|n| n == "phases") {
        cached_step_phases(&cfg, batch, &bt, &device);
    }
    for recipe in ["full", "frozen", "cached"].into_iter().filter(|r| wanted(r)) {
        let mut model = cfg.init(&device);
        let mut optimizer = AdamWConfig::new().init();
        let images = Tensor::<4>::random([batch, 3, size, size], Distribution::Default, &device);
        let (f16, f32_) = model.backbone.valid().forward(images.clone().inner());
        let (f16, f32_) = (f16.autodiff(), f32_.autodiff());
        let steps = if recipe == "full" { 3 } else { 12 };
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

/// `phases` (named only): where a cached-feature step's time goes, median ms of forward (extras and heads), loss
/// (with the hard-negative mining's read-back), backward, and the optimizer step.
fn cached_step_phases(cfg: &SsdLiteConfig, batch: usize, bt: &BatchTargets, device: &Device) {
    let mut model = cfg.init(device);
    let mut optimizer = AdamWConfig::new().init();
    let images = Tensor::<4>::random(
        [batch, 3, cfg.input_size, cfg.input_size],
        Distribution::Default,
        device,
    );
    let (f16, f32_) = model.backbone.valid().forward(images.inner());
    let (f16, f32_) = (f16.autodiff(), f32_.autodiff());
    let mut phases: [Vec<f64>; 4] = Default::default();
    for step in 0..=12 {
        let t0 = Instant::now();
        let (loc, logits) = model.forward_heads(f16.clone(), f32_.clone());
        // flex runs eagerly, but make sure the forward pass is done before the clock reads.
        let _ = loc.clone().slice([0..1, 0..1, 0..1]).into_data();
        let t1 = Instant::now();
        let (loss, _, _) = multibox_loss(loc, logits, bt);
        let t2 = Instant::now();
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        let t3 = Instant::now();
        model = optimizer.step(1e-3, model, grads);
        let _ = model.loc_heads[0].pointwise.weight.val().into_data();
        let t4 = Instant::now();
        if step > 0 {
            for (p, (a, b)) in phases.iter_mut().zip([(t0, t1), (t1, t2), (t2, t3), (t3, t4)]) {
                p.push((b - a).as_secs_f64() * 1e3);
            }
        }
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let [f, l, b, o] = &mut phases;
    println!(
        "phases   forward {:.1} ms, loss {:.1} ms, backward {:.1} ms, optimizer {:.1} ms",
        median(f),
        median(l),
        median(b),
        median(o)
    );
}
