//! `train`: the options of a training run, checked and turned into the recipe's `FitOptions`.

use super::{choose_device, open_data};
use mobilenet_trainer::augment::AugmentConfig;
use mobilenet_trainer::fit::{FitOptions, Init, OptimizerKind};
use mobilenet_trainer::model::SsdLiteConfig;
use std::path::PathBuf;
use std::process::ExitCode;

/// Where the anchor shapes come from.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Anchors {
    /// k-means on the training boxes, per feature map.
    Fit,
    /// SSD's generic scales and ratios.
    Ssd,
}

/// The training recipe's defaults, shown by --help and used when an option is left out.
fn defaults() -> FitOptions {
    FitOptions::default()
}

#[derive(clap::Args)]
pub struct TrainArgs {
    /// A Pascal VOC folder, or s3://BUCKET/PREFIX (every device's captures there, mirrored into
    /// $XDG_CACHE_HOME/mobilenetdetect/datasets; only changed objects are downloaded); repeat to merge.
    #[arg(long = "data", required = true)]
    pub data: Vec<PathBuf>,
    /// Output folder.
    #[arg(long)]
    pub out: PathBuf,
    #[arg(long, default_value_t = defaults().epochs)]
    pub epochs: usize,
    #[arg(long, default_value_t = defaults().batch_size)]
    pub batch_size: usize,
    /// Square input size in pixels (the exported model's input).
    #[arg(long, default_value_t = defaults().model.input_size)]
    pub input_size: usize,
    /// MobileNetV2 width multiplier (ImageNet weights exist for 1.0 only).
    #[arg(long, default_value_t = defaults().model.width)]
    pub width: f32,
    /// Initial weights: `imagenet` (torchvision's MobileNetV2 backbone), `scratch`, or a checkpoint (.bpk)
    /// or ONNX model (ours or a TF-OD SSDLite) to fine-tune — e.g. the model a pipeline runs now. Classes
    /// carry over by name: labels the data adds start afresh, labels it lacks are dropped.
    #[arg(long, default_value = "imagenet")]
    pub init: String,
    /// The ImageNet weights file (default: what scripts/setup recorded, or $MOBILENETDETECT_PRETRAINED).
    #[arg(long)]
    pub pretrained: Option<PathBuf>,
    /// The optimizer.
    #[arg(long, value_enum, default_value_t = defaults().optimizer)]
    pub optimizer: OptimizerKind,
    /// Peak learning rate (linear warmup, then cosine decay).
    #[arg(long, default_value_t = defaults().lr)]
    pub lr: f64,
    #[arg(long, default_value_t = defaults().weight_decay)]
    pub weight_decay: f64,
    #[arg(long, default_value_t = defaults().warmup_steps)]
    pub warmup_steps: usize,
    /// Train only the extra layers and heads for this many epochs (they warm up), then the backbone from
    /// --finetune-from-block too. Default: a third of the epochs from ImageNet or a checkpoint (every epoch
    /// with --no-finetune), none from scratch.
    #[arg(long)]
    pub freeze_backbone_epochs: Option<usize>,
    /// After the frozen epochs, the MobileNetV2 blocks from this one on (0 to 13; 13: the stride-32 stage and
    /// the last 1x1 conv) train at --backbone-lr-scale, the blocks below staying frozen with their output
    /// cached (an epoch stays fast); 0 trains the whole network.
    #[arg(long, default_value_t = defaults().finetune_from_block.unwrap_or(0))]
    pub finetune_from_block: usize,
    /// Keep the whole backbone frozen in every epoch (only the extra layers and heads learn).
    #[arg(long)]
    pub no_finetune: bool,
    /// While the backbone is frozen, cache its features for this many augmented versions of each image
    /// (computed once, reused every epoch); 0 computes them every step.
    #[arg(long, default_value_t = defaults().cached_variants)]
    pub cache_versions: usize,
    /// Memory the feature cache may use.
    #[arg(long, default_value_t = defaults().cache_megabytes)]
    pub cache_megabytes: usize,
    /// Where the frozen backbone computes the cached features, when not on --device: e.g. libtorch, whose
    /// CPU forward pass is faster than flex's while flex trains the heads faster (benchmarks/training_race).
    #[arg(long)]
    pub cache_device: Option<String>,
    /// The backbone's learning rate relative to --lr.
    #[arg(long, default_value_t = defaults().backbone_lr_scale)]
    pub backbone_lr_scale: f64,
    /// Anchor shapes (carried in the checkpoint and the export); fine-tuning keeps the shapes of --init.
    #[arg(long, value_enum, default_value_t = if defaults().fit_anchors { Anchors::Fit } else { Anchors::Ssd })]
    pub anchors: Anchors,
    /// Largest zoom-out (expand) factor of the augmentation; 1 turns zoom-out off.
    #[arg(long, default_value_t = defaults().augment.max_zoom_out)]
    pub max_zoom_out: f32,
    /// Turn off SSD's IoU-constrained random crop.
    #[arg(long)]
    pub no_crop: bool,
    /// Turn off brightness/contrast/saturation/hue jitter.
    #[arg(long)]
    pub no_photometric: bool,
    /// Turn off horizontal flips (for classes whose meaning flips, e.g. arrows).
    #[arg(long)]
    pub no_flip: bool,
    #[arg(long, default_value_t = defaults().seed)]
    pub seed: u64,
    /// cpu (burn's flex backend), wgpu (a GPU; needs a trainer built with --features wgpu) or libtorch
    /// (LibTorch's CPU kernels; --features tch).
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Continue from OUT/checkpoint.bpk after the epoch it was written at.
    #[arg(long)]
    pub resume: bool,
    /// Stop after this many epochs without a better validation mAP (0: never).
    #[arg(long, default_value_t = defaults().patience)]
    pub patience: usize,
    /// Train on the valid samples of a dataset with problems (they are counted and listed).
    #[arg(long)]
    pub skip_bad: bool,
    /// Train on exactly the samples of this snapshot (`mobilenet-trainer snapshot`, or an earlier
    /// training's OUT/snapshot.json); fails naming every sample that went missing or changed. Without it
    /// the training records what it used in OUT/snapshot.json.
    #[arg(long)]
    pub snapshot: Option<PathBuf>,
}

impl TrainArgs {
    pub fn run(self) -> ExitCode {
        let TrainArgs {
            data,
            out,
            epochs,
            batch_size,
            input_size,
            width,
            init,
            pretrained,
            optimizer,
            lr,
            weight_decay,
            warmup_steps,
            freeze_backbone_epochs,
            finetune_from_block,
            no_finetune,
            cache_versions,
            cache_megabytes,
            cache_device,
            backbone_lr_scale,
            anchors,
            max_zoom_out,
            no_crop,
            no_photometric,
            no_flip,
            seed,
            device,
            resume,
            patience,
            skip_bad,
            snapshot,
        } = self;
        let device = match choose_device(&device) {
            Ok(d) => d,
            Err(code) => return code,
        };
        let cache_device = match cache_device.map(|name| choose_device(&name)).transpose() {
            Ok(d) => d,
            Err(code) => return code,
        };
        let mut merged = match open_data(&data, skip_bad) {
            Ok(m) => m,
            Err(code) => return code,
        };
        let dataset_snapshot = match mobilenet_trainer::snapshot::pin(&mut merged, snapshot.as_deref(), &out) {
            Ok(id) => id,
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::FAILURE;
            }
        };
        let init = match init.as_str() {
            "imagenet" => Init::ImageNet(pretrained),
            "scratch" => Init::Scratch,
            path => Init::Checkpoint(PathBuf::from(path)),
        };
        if finetune_from_block > detection_common::mobilenet_v2::STRIDE32_BLOCK {
            eprintln!(
                "error: --finetune-from-block {finetune_from_block}: expected 0 to {} (the first head reads block {}'s expansion)",
                detection_common::mobilenet_v2::STRIDE32_BLOCK,
                detection_common::mobilenet_v2::STRIDE32_BLOCK
            );
            return ExitCode::from(2);
        }
        if !(1.0..=8.0).contains(&max_zoom_out) {
            eprintln!("error: --max-zoom-out {max_zoom_out}: expected 1 to 8");
            return ExitCode::from(2);
        }
        let defaults = defaults();
        let opts = FitOptions {
            out,
            model: SsdLiteConfig {
                input_size,
                width,
                ..defaults.model
            },
            epochs,
            cached_variants: cache_versions,
            cache_megabytes,
            cache_device,
            fit_anchors: anchors == Anchors::Fit,
            dataset_snapshot: Some(dataset_snapshot),
            batch_size: batch_size.max(1),
            lr,
            warmup_steps,
            seed,
            resume,
            patience,
            init,
            optimizer,
            weight_decay,
            freeze_backbone_epochs,
            finetune_from_block: (!no_finetune).then_some(finetune_from_block),
            backbone_lr_scale,
            augment: AugmentConfig {
                max_zoom_out,
                zoom_out_probability: if max_zoom_out > 1.0 {
                    defaults.augment.zoom_out_probability
                } else {
                    0.0
                },
                crop: !no_crop,
                flip: !no_flip,
                photometric: !no_photometric,
            },
        };
        match mobilenet_trainer::fit::fit(&merged, &opts, &device) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        }
    }
}
