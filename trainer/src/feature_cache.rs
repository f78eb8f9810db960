//! The feature cache: the frozen part of the backbone does not change, so its output is computed once per image
//! for a few augmented versions and reused every epoch (burn's CPU backbone pass is most of a step). With the
//! whole backbone frozen for good the cache holds its two maps and only the extra layers and the heads run per
//! step; when the upper blocks are fine-tuned it holds the activations entering the first of them (in the frozen
//! warm-up epochs too, so it is built once), and only those blocks, the extras and the heads run.

use crate::augment::AugmentConfig;
use crate::fit::{batches, to_tensor};
use crate::loss::Target;
use crate::model::{SsdLite, SsdLiteConfig};
use crate::progress::{Progress, rate_and_eta};
use burn::module::Module;
use burn::tensor::{Device, Tensor, TensorData};
use detection_common::labels::Labels;
use detection_common::voc::Sample;
use std::time::Instant;

/// What the cache holds per image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheLevel {
    /// The backbone's two maps (stride 16 and 32): the whole backbone is frozen.
    Heads,
    /// The activations entering this MobileNetV2 block: the blocks from it on are fine-tuned.
    Block(usize),
}

impl CacheLevel {
    /// Shapes [C, H, W] of the cached tensors.
    fn shapes(self, cfg: &SsdLiteConfig) -> Vec<[usize; 3]> {
        match self {
            CacheLevel::Heads => {
                let [s16, s32, ..] = cfg.feature_sizes();
                let [c16, c32, ..] = cfg.feature_channels();
                vec![[c16, s16, s16], [c32, s32, s32]]
            }
            CacheLevel::Block(b) => vec![cfg.block_input_shape(b)],
        }
    }
}

/// Cached features of one (augmented) training image.
pub struct CachedImage {
    tensors: Vec<Vec<f32>>,
    targets: Vec<Target>,
}

/// Features of every training image in a few augmented versions (the first without augmentation).
pub struct FeatureCache {
    pub level: CacheLevel,
    pub versions: Vec<Vec<CachedImage>>,
    shapes: Vec<[usize; 3]>,
}

impl FeatureCache {
    /// How many versions fit in `megabytes` (at most `wanted`).
    pub fn versions_within(
        cfg: &SsdLiteConfig,
        level: CacheLevel,
        images: usize,
        wanted: usize,
        megabytes: usize,
    ) -> usize {
        let floats: usize = level.shapes(cfg).iter().map(|[c, h, w]| c * h * w).sum();
        let fit = megabytes.saturating_mul(1 << 20) / (4 * floats * images.max(1));
        wanted.min(fit)
    }

    /// Runs the frozen part of the backbone (below `level`) over `versions` augmented versions of `train`
    /// (seeded from `seed`) on `device` (a copy of the backbone goes there when the model lives elsewhere).
    #[allow(clippy::too_many_arguments)]
    pub fn build(
        model: &SsdLite,
        cfg: &SsdLiteConfig,
        level: CacheLevel,
        train: &[Sample],
        labels: &Labels,
        augment: AugmentConfig,
        seed: u64,
        versions: usize,
        device: &Device,
    ) -> Result<Self, String> {
        let backbone = model.backbone.valid().to_device(device);
        let shapes = level.shapes(cfg);
        let sizes: Vec<usize> = shapes.iter().map(|[c, h, w]| c * h * w).collect();
        let what = match level {
            CacheLevel::Heads => "backbone features".to_string(),
            CacheLevel::Block(b) => format!("the backbone below block {b}"),
        };
        let started = Instant::now();
        let mut all = Vec::with_capacity(versions);
        for v in 0..versions {
            let augment = if v == 0 { AugmentConfig::none() } else { augment };
            let mut progress = Progress::new(
                format!("caching {what}, version {}/{versions}", v + 1),
                train.len() as u64,
            );
            let mut images = Vec::with_capacity(train.len());
            // The rate is this pass's; the time left covers the passes still to come.
            let pass_started = Instant::now();
            // In dataset order: the version's seed alone decides its augmentation.
            let stream = batches(
                train.to_vec(),
                labels.clone(),
                cfg.input_size,
                16,
                seed.wrapping_mul(7919).wrapping_add(v as u64),
                augment,
                false,
            );
            for batch in stream {
                let batch = batch?;
                let x = to_tensor(&batch, cfg.input_size, device);
                let outputs = match level {
                    CacheLevel::Heads => {
                        let (a, b) = backbone.forward(x);
                        vec![a, b]
                    }
                    CacheLevel::Block(b) => vec![backbone.forward_below(x, b)],
                };
                let data = outputs
                    .into_iter()
                    .map(|t| t.into_data().try_to_vec::<f32>().map_err(|e| format!("{e:?}")))
                    .collect::<Result<Vec<_>, _>>()?;
                for (i, p) in batch.into_iter().enumerate() {
                    images.push(CachedImage {
                        tensors: data
                            .iter()
                            .zip(&sizes)
                            .map(|(d, n)| d[i * n..(i + 1) * n].to_vec())
                            .collect(),
                        targets: p.targets,
                    });
                }
                let (rate, eta) = rate_and_eta(images.len(), train.len(), pass_started);
                let later = (versions - v - 1) as f64 * train.len() as f64 / rate.max(1e-9);
                progress.update(images.len() as u64, || {
                    format!("{rate:.1} images/s, ETA {:.0}s", eta + later)
                });
            }
            progress.finish(format!("({:.0}s so far)", started.elapsed().as_secs_f64()));
            all.push(images);
        }
        Ok(Self {
            level,
            versions: all,
            shapes,
        })
    }

    /// A batch as (the cached tensors, in `CacheLevel::shapes` order, targets) on `device`.
    pub fn batch(&self, picks: &[(usize, usize)], device: &Device) -> (Vec<Tensor<4>>, Vec<Vec<Target>>) {
        let n = picks.len();
        let mut flat: Vec<Vec<f32>> = vec![Vec::new(); self.shapes.len()];
        let mut targets = Vec::with_capacity(n);
        for &(v, i) in picks {
            let c = &self.versions[v][i];
            for (all, t) in flat.iter_mut().zip(&c.tensors) {
                all.extend_from_slice(t);
            }
            targets.push(c.targets.clone());
        }
        let tensors = flat
            .into_iter()
            .zip(&self.shapes)
            .map(|(d, &[c, h, w])| Tensor::from_data(TensorData::new(d, [n, c, h, w]), device))
            .collect();
        (tensors, targets)
    }
}
