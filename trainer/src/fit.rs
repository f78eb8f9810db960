//! `train`: the training driver. Initialises the model (ImageNet backbone, a checkpoint, or scratch), decodes
//! and augments images on a worker thread, runs AdamW or SGD with warmup + cosine decay (optionally with the
//! backbone frozen for the first epochs, its features cached, and a smaller backbone rate), evaluates VOC
//! mAP@0.5 on the validation split after every epoch, and writes atomically: the last checkpoint and optimizer
//! state (for `--resume`), the best checkpoint and its ONNX export, and the metrics log.

use crate::augment::{AugmentConfig, Prepared, Rng, prepare};
use crate::checkpoint::{self, CheckpointInfo};
use crate::data::{Merged, decode};
use crate::evaluate::{Detector, evaluate_samples};
use crate::export::export_checkpoint;
use crate::feature_cache::{CacheLevel, FeatureCache};
use crate::loss::{Target, anchor_corners, batch_targets};
use crate::metrics::{EpochMetrics, MetricsLog};
use crate::model::{SsdLite, SsdLiteConfig};
use crate::progress::{Progress, rate_and_eta};
use crate::step::{StepOptions, learning_rate, train_step, train_step_from_block, train_step_on_features};
use burn::module::Module;
use burn::optim::decay::WeightDecayConfig;
use burn::optim::momentum::MomentumConfig;
use burn::optim::{AdamWConfig, ModuleOptimizer, OptimizerRecord, SgdConfig};
use burn::tensor::{Device, Tensor, TensorData};
use detection_common::labels::Labels;
use detection_common::voc::{Sample, Split};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Where the weights start.
#[derive(Debug, Clone, PartialEq)]
pub enum Init {
    /// torchvision's ImageNet MobileNetV2 backbone; extras and heads random. `None`: the weights file
    /// `scripts/setup` recorded (or `$MOBILENETDETECT_PRETRAINED`).
    ImageNet(Option<PathBuf>),
    /// A checkpoint or ONNX model to fine-tune; its classes carry over by name.
    Checkpoint(PathBuf),
    Scratch,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OptimizerKind {
    /// AdamW (decoupled weight decay).
    #[value(name = "adamw")]
    AdamW,
    /// With momentum 0.9 (SSD's original recipe).
    Sgd,
}

/// A training run's configuration. `Default` is the recipe `mobilenet-trainer train` uses: the CLI's defaults
/// are read from here, so there is one set.
#[derive(Debug, Clone)]
pub struct FitOptions {
    pub out: PathBuf,
    /// The network's width and input size; `num_classes` is taken from the dataset's labels.
    pub model: SsdLiteConfig,
    pub epochs: usize,
    pub batch_size: usize,
    pub lr: f64,
    pub warmup_steps: usize,
    pub seed: u64,
    pub resume: bool,
    /// Stop after this many epochs without a better validation mAP (0: never).
    pub patience: usize,
    pub init: Init,
    pub optimizer: OptimizerKind,
    pub weight_decay: f64,
    /// Epochs at the start with the backbone frozen (only extras and heads learn, and much faster). `None`:
    /// from pretrained weights, a third of the epochs when `finetune_from_block` is set (the heads warm up
    /// before the backbone moves), else every epoch; none from scratch.
    pub freeze_backbone_epochs: Option<usize>,
    /// After the frozen epochs, which MobileNetV2 blocks train: those from this one on (and the last 1x1
    /// conv), the blocks below staying frozen with their output cached; 0 trains the whole network (no cache).
    /// `None`: the backbone stays frozen throughout.
    pub finetune_from_block: Option<usize>,
    /// The backbone's learning rate as a fraction of `lr` once it trains.
    pub backbone_lr_scale: f64,
    pub augment: AugmentConfig,
    /// While the backbone is frozen its features are computed once per image for this many augmented versions
    /// and reused every epoch (burn's CPU backbone pass is most of a frozen step); 0 turns the cache off.
    pub cached_variants: usize,
    /// Memory the feature cache may use; fewer versions (or none) are cached to stay within it.
    pub cache_megabytes: usize,
    /// Where the frozen backbone computes the cached features (`None`: the training device). Another backend
    /// may run the forward pass faster than the one that trains the heads fastest.
    pub cache_device: Option<Device>,
    /// Fit the anchor shapes to the training boxes (`anchors.rs`) instead of SSD's; a fine-tuned model keeps
    /// the shapes of the model it starts from.
    pub fit_anchors: bool,
    /// The id of the dataset snapshot trained on (`snapshot::pin`), carried into checkpoints and the export.
    pub dataset_snapshot: Option<String>,
}

impl Default for FitOptions {
    fn default() -> Self {
        Self {
            out: PathBuf::from("training"),
            model: SsdLiteConfig {
                num_classes: 0,
                width: 1.0,
                input_size: 300,
                anchor_shapes: None,
                variant: Default::default(),
            },
            epochs: 30,
            batch_size: 16,
            lr: 1e-3,
            warmup_steps: 100,
            seed: 0,
            resume: false,
            patience: 0,
            init: Init::ImageNet(None),
            optimizer: OptimizerKind::AdamW,
            weight_decay: 1e-4,
            freeze_backbone_epochs: None,
            finetune_from_block: Some(detection_common::mobilenet_v2::STRIDE32_BLOCK),
            backbone_lr_scale: 0.1,
            augment: AugmentConfig::default(),
            cached_variants: 4,
            cache_megabytes: 4096,
            cache_device: None,
            fit_anchors: true,
            dataset_snapshot: None,
        }
    }
}

impl FitOptions {
    /// How many epochs start with the backbone frozen.
    pub fn frozen_epochs(&self) -> usize {
        let default = match (&self.init, self.finetune_from_block) {
            (Init::Scratch, _) => 0,
            (_, Some(_)) => (self.epochs / 3).max(1),
            (_, None) => self.epochs,
        };
        self.freeze_backbone_epochs.unwrap_or(default)
    }

    /// What the feature cache holds in an epoch (`None`: no cache, every step runs the whole network).
    fn cache_level(&self, frozen: bool) -> Option<CacheLevel> {
        if self.cached_variants == 0 {
            return None;
        }
        // One cache for both phases when the upper blocks will train: the frozen epochs run those few blocks
        // forward on it, which costs less than caching the backbone's output as well.
        match (frozen, self.finetune_from_block) {
            (_, Some(block)) if block > 0 => Some(CacheLevel::Block(block)),
            (true, _) => Some(CacheLevel::Heads),
            _ => None,
        }
    }
}

/// Decodes and augments batches on a worker thread, so the model never waits on JPEG decoding. Each image's
/// augmentation is seeded from (seed, epoch, index): runs repeat exactly whatever the thread timing.
pub(crate) fn batches(
    samples: Vec<Sample>,
    labels: detection_common::labels::Labels,
    size: usize,
    batch: usize,
    seed: u64,
    augment: AugmentConfig,
    shuffle: bool,
) -> std::sync::mpsc::Receiver<Result<Vec<Prepared>, String>> {
    let (tx, rx) = std::sync::mpsc::sync_channel(2);
    std::thread::spawn(move || {
        let mut rng = Rng::new(seed);
        let mut order: Vec<usize> = (0..samples.len()).collect();
        if shuffle {
            for i in (1..order.len()).rev() {
                order.swap(i, rng.below(i + 1));
            }
        }
        for chunk in order.chunks(batch) {
            let prepared: Result<Vec<Prepared>, String> = chunk
                .iter()
                .map(|&i| {
                    let d = decode(&samples[i], &labels)?;
                    let mut rng = Rng::new(seed ^ (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
                    Ok(prepare(&d.source(), size, &augment, &mut rng))
                })
                .collect();
            if tx.send(prepared).is_err() {
                return;
            }
        }
    });
    rx
}

pub(crate) fn to_tensor(batch: &[Prepared], size: usize, device: &Device) -> Tensor<4> {
    let pixels: Vec<f32> = batch.iter().flat_map(|p| p.pixels.iter().copied()).collect();
    Tensor::from_data(TensorData::new(pixels, [batch.len(), 3, size, size]), device)
}

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), String> {
    detection_common::files::write_atomically(path, bytes).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

fn new_optimizer(opts: &FitOptions) -> ModuleOptimizer {
    match opts.optimizer {
        OptimizerKind::AdamW => AdamWConfig::new().with_weight_decay(opts.weight_decay as f32).init(),
        OptimizerKind::Sgd => SgdConfig::new()
            .with_momentum(Some(MomentumConfig::new().with_momentum(0.9)))
            .with_weight_decay(Some(WeightDecayConfig::new(opts.weight_decay as f32)))
            .init(),
    }
}

#[allow(clippy::large_enum_variant)] // one per step
enum StepInput {
    Pixels(Tensor<4>),
    /// Cached features, as `CacheLevel::shapes` lists them.
    Cached(CacheLevel, Vec<Tensor<4>>),
}

/// One step's input and its targets, or why it could not be read.
type StepBatch = Result<(StepInput, Vec<Vec<Target>>), String>;

/// A checkpoint (.bpk), one of our exported models or a TF-OD SSDLite-MobileNetV2 (.onnx) as a trainable model;
/// a TF model's classes are named by `labels` (the data's, which start with them).
fn load_any(
    path: &Path,
    labels: &Labels,
    input_size: usize,
    device: &Device,
) -> Result<(SsdLite, CheckpointInfo), String> {
    if path.extension().is_some_and(|e| e.eq_ignore_ascii_case("onnx")) {
        let opts = crate::import::ImportOptions {
            labels: Some(labels),
            anchors: None,
            input_size,
        };
        crate::import::load_onnx(path, &opts, device)
    } else {
        checkpoint::load(path, device)
    }
}

/// Trains on `merged` on `device` (a CPU or GPU device; autodiff is added here).
pub fn fit(merged: &Merged, opts: &FitOptions, device: &Device) -> Result<(), String> {
    std::fs::create_dir_all(&opts.out).map_err(|e| format!("cannot create {}: {e}", opts.out.display()))?;
    // A run killed mid-write (a chart, a checkpoint) left a temporary file: it is of no use to anyone.
    detection_common::files::remove_dead_writers_temp_files(&opts.out);
    let train: Vec<Sample> = merged
        .samples
        .iter()
        .filter(|s| s.split == Split::Train)
        .cloned()
        .collect();
    let mut val: Vec<Sample> = merged
        .samples
        .iter()
        .filter(|s| s.split == Split::Val)
        .cloned()
        .collect();
    if train.is_empty() {
        return Err("no training images".into());
    }
    if val.is_empty() {
        eprintln!("warning: no validation images; validating on the training split");
        val = train.clone();
    }
    let compute = device.clone();
    let device = device.clone().autodiff();
    let checkpoint_path = opts.out.join("checkpoint.bpk");
    let optimizer_path = opts.out.join("optimizer.bpk");
    let mut optimizer = new_optimizer(opts);
    let mut first_epoch = 0;
    let mut metrics;
    if opts.resume && !checkpoint_path.exists() {
        // Starting afresh would overwrite metrics.csv and the model of the run the user meant to continue.
        return Err(format!(
            "--resume: {} does not exist, so there is nothing to resume; leave out --resume to start a new training",
            checkpoint_path.display()
        ));
    }
    let resuming = opts.resume;
    let (mut model, cfg) = if resuming {
        let (model, info) = checkpoint::load(&checkpoint_path, &device)?;
        if info.labels != merged.labels {
            return Err(format!(
                "{}: trained on labels ({}), the data has ({})",
                checkpoint_path.display(),
                info.labels.foreground().join(", "),
                merged.labels.foreground().join(", ")
            ));
        }
        if let Ok(record) = OptimizerRecord::load(&optimizer_path) {
            optimizer = optimizer.load_record(record);
        } else {
            eprintln!(
                "warning: {} missing or unreadable: optimizer state starts afresh",
                optimizer_path.display()
            );
        }
        first_epoch = info.epoch + 1;
        metrics = MetricsLog::resume(&opts.out, info.epoch)?;
        eprintln!("resuming after epoch {first_epoch} from {}", checkpoint_path.display());
        (model.train(), info.config)
    } else {
        let mut cfg = SsdLiteConfig {
            num_classes: merged.labels.len(),
            ..opts.model.clone()
        };
        if opts.fit_anchors && !matches!(opts.init, Init::Checkpoint(_)) {
            let boxes = crate::anchors::box_shapes(&train);
            let shapes = crate::anchors::fit(&boxes);
            eprintln!(
                "anchors: fitted to {} training boxes (mean best IoU {:.2}, SSD's shapes {:.2})",
                boxes.len(),
                crate::anchors::mean_best_iou(&boxes, &shapes),
                crate::anchors::mean_best_iou(&boxes, &cfg.shapes())
            );
            cfg.anchor_shapes = Some(shapes);
        }
        // The randomly initialised layers (extras and heads; everything from scratch) come from --seed too, so
        // that a run repeats, not only its augmentation.
        device.seed(opts.seed);
        let mut model = cfg.init(&device);
        match &opts.init {
            Init::ImageNet(path) => {
                let path = match path.clone().or_else(crate::pretrained::default_weights) {
                    Some(p) => p,
                    None => {
                        return Err(format!(
                            "no ImageNet weights: run scripts/setup, give --pretrained FILE ({}), or --init scratch",
                            crate::pretrained::WEIGHTS_FILE
                        ));
                    }
                };
                let n = crate::pretrained::load_imagenet_backbone(&mut model, &cfg, &path)?;
                eprintln!("backbone: ImageNet weights from {} ({n} tensors)", path.display());
            }
            Init::Checkpoint(path) => {
                let (old_model, info) = load_any(path, &merged.labels, cfg.input_size, &device)?;
                if info.config.width != cfg.width {
                    return Err(format!(
                        "{}: cannot fine-tune from it: it has width {}, this training --width {}",
                        path.display(),
                        info.config.width,
                        cfg.width
                    ));
                }
                if info.config.input_size != cfg.input_size {
                    eprintln!(
                        "note: {} was trained at {}x{}; training continues at {}x{}",
                        path.display(),
                        info.config.input_size,
                        info.config.input_size,
                        cfg.input_size,
                        cfg.input_size
                    );
                }
                // The box heads learnt offsets from these anchors, the layers in this variant's layout.
                cfg.anchor_shapes = info.config.anchor_shapes.clone();
                cfg.variant = info.config.variant;
                if info.labels == merged.labels {
                    model = old_model;
                } else {
                    // Other classes: everything carries over but the class rows of labels the data no longer
                    // has; new labels start from fresh rows.
                    let old_class = crate::relabel::class_rows(path, &info.labels, &merged.labels);
                    // Built again: the layers of the model's variant, which may not be the default one.
                    model = cfg.init(&device);
                    model.backbone = old_model.backbone;
                    model.extras = old_model.extras;
                    model.loc_heads = old_model.loc_heads;
                    for (head, old) in model.cls_heads.iter_mut().zip(old_model.cls_heads) {
                        crate::relabel::carry_classes(head, old, &old_class);
                    }
                }
                model.apply_variant(cfg.variant, cfg.input_size);
                eprintln!("initialised from {}", path.display());
            }
            Init::Scratch => eprintln!("training from scratch (no pretrained backbone)"),
        }
        metrics = MetricsLog::start(&opts.out)?;
        (model, cfg)
    };
    // A trained detector keeps the statistics its layers learnt on (ImageNet's backbone gains nothing from it:
    // 0.668 against 0.677 on benchmarks/real_footage, seed 2).
    if matches!(opts.init, Init::Checkpoint(_)) {
        model.freeze_batchnorm_statistics();
    }
    let mut best = metrics.best();
    eprintln!(
        "{} training / {} validation images, {} classes, input {}x{}, width {}, {} parameters",
        train.len(),
        val.len(),
        cfg.num_classes - 1,
        cfg.input_size,
        cfg.input_size,
        cfg.width,
        checkpoint::parameters(&model)
    );
    let anchors = cfg.anchors();
    let corners = anchor_corners(&anchors);
    let steps_per_epoch = train.len().div_ceil(opts.batch_size);
    let total_steps = steps_per_epoch * opts.epochs;
    // Small datasets have few steps: never spend more than a tenth of the run warming up.
    let warmup = opts.warmup_steps.min(total_steps / 10);
    let mut cache: Option<FeatureCache> = None;
    let frozen_epochs = opts.frozen_epochs();
    for epoch in first_epoch..opts.epochs {
        let started = Instant::now();
        let frozen = epoch < frozen_epochs;
        let (mut loss_sum, mut seen) = (0f64, 0usize);
        let mut lr = opts.lr;
        let level = opts.cache_level(frozen);
        if level != cache.as_ref().map(|c| c.level) {
            // Cached features of the layers that train from here on would be stale.
            cache = None;
        }
        if let Some(level) = level.filter(|_| cache.is_none()) {
            let versions =
                FeatureCache::versions_within(&cfg, level, train.len(), opts.cached_variants, opts.cache_megabytes);
            if versions == 0 {
                eprintln!("note: the cached features do not fit in --cache-megabytes; computing them every step");
            } else {
                cache = Some(FeatureCache::build(
                    &model,
                    &cfg,
                    level,
                    &train,
                    &merged.labels,
                    opts.augment,
                    opts.seed,
                    versions,
                    opts.cache_device.as_ref().unwrap_or(&compute),
                )?);
            }
        }
        let inputs: Box<dyn Iterator<Item = StepBatch>> = match &cache {
            Some(cache) => {
                let mut rng = Rng::new(opts.seed.wrapping_mul(1000).wrapping_add(epoch as u64));
                let mut order: Vec<usize> = (0..train.len()).collect();
                for i in (1..order.len()).rev() {
                    order.swap(i, rng.below(i + 1));
                }
                let picks: Vec<(usize, usize)> = order
                    .into_iter()
                    .map(|i| (rng.below(cache.versions.len()), i))
                    .collect();
                let device = device.clone();
                Box::new(
                    picks
                        .chunks(opts.batch_size)
                        .map(|c| c.to_vec())
                        .collect::<Vec<_>>()
                        .into_iter()
                        .map(move |chunk| {
                            let (tensors, t) = cache.batch(&chunk, &device);
                            Ok((StepInput::Cached(cache.level, tensors), t))
                        }),
                )
            }
            _ => {
                let stream = batches(
                    train.clone(),
                    merged.labels.clone(),
                    cfg.input_size,
                    opts.batch_size,
                    opts.seed.wrapping_mul(1000).wrapping_add(epoch as u64),
                    opts.augment,
                    true,
                );
                let (size, device) = (cfg.input_size, device.clone());
                Box::new(stream.into_iter().map(move |batch| {
                    let batch = batch?;
                    let targets = batch.iter().map(|p| p.targets.clone()).collect();
                    Ok((StepInput::Pixels(to_tensor(&batch, size, &device)), targets))
                }))
            }
        };
        // Images/s and ETA count training only: the first epoch's feature caching is not part of it.
        let training_started = Instant::now();
        let mut progress = Progress::new(format!("epoch {}/{}", epoch + 1, opts.epochs), train.len() as u64);
        for (i, input) in inputs.enumerate() {
            let (input, targets) = input?;
            let batch_len = targets.len();
            let step = epoch * steps_per_epoch + i;
            lr = learning_rate(step, total_steps, warmup, opts.lr, 0.02);
            let bt = batch_targets(&anchors, &corners, &targets, &device);
            let step_opts = StepOptions {
                lr,
                backbone_lr: lr * opts.backbone_lr_scale,
                frozen_backbone: frozen,
            };
            let (m, loss) = match input {
                StepInput::Pixels(images) => train_step(model, &mut optimizer, step_opts, images, &bt),
                StepInput::Cached(CacheLevel::Heads, maps) => {
                    let [a, b]: [Tensor<4>; 2] = maps.try_into().expect("the heads' cache holds two maps");
                    train_step_on_features(model, &mut optimizer, lr, a, b, &bt)
                }
                StepInput::Cached(CacheLevel::Block(block), mut h) => {
                    let h = h.pop().expect("the block cache holds one tensor");
                    train_step_from_block(model, &mut optimizer, step_opts, block, h, &bt)
                }
            };
            model = m;
            if !loss.total.is_finite() {
                return Err(format!(
                    "the loss became {} at epoch {} step {i}: lower --lr",
                    loss.total,
                    epoch + 1
                ));
            }
            loss_sum += loss.total as f64 * batch_len as f64;
            seen += batch_len;
            let (rate, eta) = rate_and_eta(seen, train.len(), training_started);
            let mean = loss_sum / seen as f64;
            progress.update(seen as u64, || {
                format!(
                    "loss {mean:.4} | {rate:.1} images/s | ETA {eta:.0}s{}",
                    match (frozen, opts.finetune_from_block) {
                        (true, _) => " (backbone frozen)".to_string(),
                        (false, Some(b)) if b > 0 => format!(" (backbone blocks {b}.. training)"),
                        _ => String::new(),
                    }
                )
            });
        }
        let train_secs = training_started.elapsed().as_secs_f64();
        progress.finish(format!(
            "loss {:.4} | {:.1} images/s | {train_secs:.0}s",
            loss_sum / seen.max(1) as f64,
            seen as f64 / train_secs.max(1e-9)
        ));
        let valid = model.valid();
        let mut detector = Detector::from_model(valid.clone(), cfg.clone(), merged.labels.clone(), &compute);
        let map = evaluate_samples(&mut detector, &val, &merged.labels)?.map50;
        let secs = started.elapsed().as_secs_f64();
        let mean_loss = (loss_sum / seen as f64) as f32;
        eprintln!(
            "epoch {}: train loss {mean_loss:.4}, val mAP@0.5 {map:.3} ({secs:.0}s)",
            epoch + 1
        );
        let info = CheckpointInfo {
            config: cfg.clone(),
            labels: merged.labels.clone(),
            epoch,
            dataset_snapshot: opts.dataset_snapshot.clone(),
        };
        if map > best.0 {
            best = (map, epoch);
            checkpoint::save(&valid, &info, &opts.out.join("best.bpk"))?;
            write_atomic(&opts.out.join("model.onnx"), &export_checkpoint(&valid, &info))?;
        }
        // Optimizer state first, then the checkpoint that names the epoch: a crash between the two resumes
        // from the previous epoch with at worst slightly newer moments.
        let record = optimizer
            .to_record()
            .into_bytes()
            .map_err(|e| format!("cannot serialise the optimizer state: {e:?}"))?;
        write_atomic(&optimizer_path, &record)?;
        checkpoint::save(&valid, &info, &checkpoint_path)?;
        metrics.push(EpochMetrics {
            epoch,
            loss: mean_loss,
            map,
            lr,
            seconds: secs,
            images_per_second: seen as f64 / train_secs.max(1e-9),
            frozen_backbone: frozen,
        })?;
        if opts.patience > 0 && epoch >= best.1 + opts.patience {
            eprintln!("early stop: no better validation mAP for {} epochs", opts.patience);
            break;
        }
    }
    eprintln!(
        "best val mAP@0.5 {:.3} (epoch {}); model: {}",
        best.0,
        best.1 + 1,
        opts.out.join("model.onnx").display()
    );
    Ok(())
}
