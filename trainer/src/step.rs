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

/// Learning rates of one step and whether the backbone trains at all.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepOptions {
    /// For the extra layers and the heads.
    pub lr: f64,
    /// For the MobileNetV2 backbone (pretrained features usually want a smaller one).
    pub backbone_lr: f64,
    /// Backbone forward without autodiff and with BatchNorm on running statistics; no backbone update.
    pub frozen_backbone: bool,
}

/// Forward, MultiBox loss, backward and an optimiser step (the backbone's parameters with their own rate).
pub fn train_step(
    model: SsdLite,
    optimizer: &mut ModuleOptimizer,
    opts: StepOptions,
    images: Tensor<4>,
    targets: &BatchTargets,
) -> (SsdLite, StepLoss) {
    let (loc, logits) = if opts.frozen_backbone {
        model.forward_frozen_backbone(images)
    } else {
        model.forward(images)
    };
    optimise(model, optimizer, opts, loc, logits, targets)
}

/// The MultiBox loss of `loc` and `logits`, its backward pass and the optimiser's steps: the backbone's
/// parameters at their own rate unless it is frozen, everything else at `opts.lr`.
fn optimise(
    model: SsdLite,
    optimizer: &mut ModuleOptimizer,
    opts: StepOptions,
    loc: Tensor<3>,
    logits: Tensor<3>,
    targets: &BatchTargets,
) -> (SsdLite, StepLoss) {
    let (loss, l, c) = multibox_loss(loc, logits, targets);
    let mut grads = loss.backward();
    let mut model = model;
    if !opts.frozen_backbone {
        let backbone = GradientsParams::from_module(&mut grads, &model.backbone);
        model = optimizer.step(opts.backbone_lr, model, backbone);
    }
    let rest = GradientsParams::from_grads(grads, &model);
    let loss = StepLoss {
        total: l + c,
        loc: l,
        cls: c,
    };
    (optimizer.step(opts.lr, model, rest), loss)
}

/// A step on cached backbone features (frozen backbone): only the extras and heads run forward and backward.
pub fn train_step_on_features(
    model: SsdLite,
    optimizer: &mut ModuleOptimizer,
    lr: f64,
    stride16: Tensor<4>,
    stride32: Tensor<4>,
    targets: &BatchTargets,
) -> (SsdLite, StepLoss) {
    let (loc, logits) = model.forward_heads(stride16, stride32);
    let opts = StepOptions {
        lr,
        backbone_lr: 0.0,
        frozen_backbone: true,
    };
    optimise(model, optimizer, opts, loc, logits, targets)
}

/// A step on cached activations `h` entering block `block`: the blocks from there on (at `opts.backbone_lr`,
/// unless the backbone is frozen, when they only run forward), the extras and the heads (at `opts.lr`); the
/// blocks below get no gradient and stay as they are.
pub fn train_step_from_block(
    model: SsdLite,
    optimizer: &mut ModuleOptimizer,
    opts: StepOptions,
    block: usize,
    h: Tensor<4>,
    targets: &BatchTargets,
) -> (SsdLite, StepLoss) {
    let (loc, logits) = if opts.frozen_backbone {
        model.forward_from_block_frozen(h, block)
    } else {
        model.forward_from_block(h, block)
    };
    optimise(model, optimizer, opts, loc, logits, targets)
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
