//! One optimisation step of the detector, and the learning-rate schedule (linear warmup, then cosine decay).

use crate::loss::{BatchTargets, multibox_loss};
use crate::model::SsdLite;
use burn::optim::{GradientsParams, ModuleOptimizer};
use burn::tensor::Tensor;

/// Losses of one step, for the progress display and the metrics log.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepLoss {
    pub total: f32,
    pub loc: f32,
    pub cls: f32,
}

/// Forward, MultiBox loss, backward and an optimiser step.
pub fn train_step(
    model: SsdLite,
    optimizer: &mut ModuleOptimizer,
    lr: f64,
    images: Tensor<4>,
    targets: &BatchTargets,
) -> (SsdLite, StepLoss) {
    let (loc, logits) = model.forward(images);
    let (loss, l, c) = multibox_loss(loc, logits, targets);
    let total = l + c;
    let grads = GradientsParams::from_grads(loss.backward(), &model);
    (optimizer.step(lr, model, grads), StepLoss { total, loc: l, cls: c })
}

/// Linear warmup over `warmup` steps to `base`, then cosine decay to `base * floor` at `total` steps.
pub fn learning_rate(step: usize, total: usize, warmup: usize, base: f64, floor: f64) -> f64 {
    if step < warmup {
        return base * (step + 1) as f64 / warmup as f64;
    }
    let span = total.saturating_sub(warmup).max(1) as f64;
    let t = ((step - warmup) as f64 / span).min(1.0);
    base * (floor + (1.0 - floor) * 0.5 * (1.0 + (std::f64::consts::PI * t).cos()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_warms_up_then_decays() {
        assert!((learning_rate(0, 100, 10, 1.0, 0.0) - 0.1).abs() < 1e-12);
        assert!((learning_rate(9, 100, 10, 1.0, 0.0) - 1.0).abs() < 1e-12);
        assert!((learning_rate(10, 100, 10, 1.0, 0.0) - 1.0).abs() < 1e-12);
        assert!((learning_rate(55, 100, 10, 1.0, 0.0) - 0.5).abs() < 1e-9);
        assert!((learning_rate(100, 100, 10, 1.0, 0.05) - 0.05).abs() < 1e-12);
    }
}
