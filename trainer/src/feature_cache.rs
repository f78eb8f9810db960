//! The feature cache: while the backbone is frozen its features do not change, so they are computed once per
//! image for a few augmented versions and reused every epoch (burn's CPU backbone pass is most of a frozen
//! step). Only the extra layers and the heads then run per step.

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

/// Backbone features of one (augmented) training image.
pub struct CachedImage {
    stride16: Vec<f32>,
    stride32: Vec<f32>,
    targets: Vec<Target>,
}

/// Backbone features of every training image in a few augmented versions (the first without augmentation).
pub struct FeatureCache {
    pub versions: Vec<Vec<CachedImage>>,
    dims16: [usize; 3],
    dims32: [usize; 3],
}

impl FeatureCache {
    /// How many versions fit in `megabytes` (at most `wanted`).
    pub fn versions_within(cfg: &SsdLiteConfig, images: usize, wanted: usize, megabytes: usize) -> usize {
        let [s16, s32, ..] = cfg.feature_sizes();
        let [c16, c32, ..] = cfg.feature_channels();
        let bytes_per_image = 4 * (c16 * s16 * s16 + c32 * s32 * s32);
        let fit = megabytes.saturating_mul(1 << 20) / (bytes_per_image * images.max(1));
        wanted.min(fit)
    }

    /// Runs the frozen backbone over `versions` augmented versions of `train` (seeded from `seed`) on `device`
    /// (a copy of the backbone goes there when the model lives elsewhere).
    #[allow(clippy::too_many_arguments)]
    pub fn build(
        model: &SsdLite,
        cfg: &SsdLiteConfig,
        train: &[Sample],
        labels: &Labels,
        augment: AugmentConfig,
        seed: u64,
        versions: usize,
        device: &Device,
    ) -> Result<Self, String> {
        let backbone = model.backbone.valid().to_device(device);
        let [s16, s32, ..] = cfg.feature_sizes();
        let [c16, c32, ..] = cfg.feature_channels();
        let started = Instant::now();
        let mut all = Vec::with_capacity(versions);
        for v in 0..versions {
            let augment = if v == 0 { AugmentConfig::none() } else { augment };
            let mut progress = Progress::new(
                format!("caching backbone features, version {}/{versions}", v + 1),
                train.len() as u64,
            );
            let mut images = Vec::with_capacity(train.len());
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
                let (f16, f32_) = backbone.forward(to_tensor(&batch, cfg.input_size, device));
                let f16: Vec<f32> = f16.into_data().try_to_vec::<f32>().map_err(|e| format!("{e:?}"))?;
                let f32_: Vec<f32> = f32_.into_data().try_to_vec::<f32>().map_err(|e| format!("{e:?}"))?;
                let (n16, n32) = (c16 * s16 * s16, c32 * s32 * s32);
                for (b, p) in batch.into_iter().enumerate() {
                    images.push(CachedImage {
                        stride16: f16[b * n16..(b + 1) * n16].to_vec(),
                        stride32: f32_[b * n32..(b + 1) * n32].to_vec(),
                        targets: p.targets,
                    });
                }
                let (rate, eta) = rate_and_eta(images.len(), train.len(), started);
                progress.update(images.len() as u64, || format!("{rate:.1} images/s, ETA {eta:.0}s"));
            }
            progress.finish(format!("({:.0}s so far)", started.elapsed().as_secs_f64()));
            all.push(images);
        }
        Ok(Self {
            versions: all,
            dims16: [c16, s16, s16],
            dims32: [c32, s32, s32],
        })
    }

    /// A batch as (stride-16 features, stride-32 features, targets) on `device`.
    pub fn batch(&self, picks: &[(usize, usize)], device: &Device) -> (Tensor<4>, Tensor<4>, Vec<Vec<Target>>) {
        let n = picks.len();
        let (mut a, mut b, mut t) = (Vec::new(), Vec::new(), Vec::with_capacity(n));
        for &(v, i) in picks {
            let c = &self.versions[v][i];
            a.extend_from_slice(&c.stride16);
            b.extend_from_slice(&c.stride32);
            t.push(c.targets.clone());
        }
        let [c16, h16, w16] = self.dims16;
        let [c32, h32, w32] = self.dims32;
        (
            Tensor::from_data(TensorData::new(a, [n, c16, h16, w16]), device),
            Tensor::from_data(TensorData::new(b, [n, c32, h32, w32]), device),
            t,
        )
    }
}
