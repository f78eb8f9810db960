//! `mobilenet-trainer`: retrains mobilenetdetect's detector on captured datasets.

use clap::{Parser, Subcommand};
use detection_common::voc::{Sample, Split};
use mobilenet_trainer::augment::AugmentConfig;
use mobilenet_trainer::compare::{Comparison, Gate, Tolerance};
use mobilenet_trainer::data::Merged;
use mobilenet_trainer::evaluate::{Detector, evaluate_samples};
use mobilenet_trainer::fit::{FitOptions, Init, OptimizerKind};
use mobilenet_trainer::model::SsdLiteConfig;
use mobilenet_trainer::score::Tracking;
use mobilenet_trainer::snapshot::Snapshot;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "mobilenet-trainer",
    version,
    about = "Retrain the mobilenetdetect detector on Pascal VOC captures"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum ReviewAction {
    /// Write every sample's boxes (with their confidence and review marks as attributes) into one CVAT file;
    /// samples awaiting review first. Upload the folder's JPEGImages/ to a CVAT task and import the file there.
    ExportCvat {
        /// A Pascal VOC folder.
        #[arg(long)]
        data: PathBuf,
        #[arg(long)]
        output: PathBuf,
    },
    /// Read a reviewed CVAT for images 1.1 file back: samples whose boxes changed are rewritten (marked
    /// <reviewed>1</reviewed>), untouched ones stay as they are. Clear a box's review attribute to confirm it.
    ImportCvat {
        #[arg(long)]
        data: PathBuf,
        #[arg(long)]
        input: PathBuf,
    },
    /// Make (or update) a Label Studio project of the captures: images uploaded most uncertain first, the boxes
    /// as predictions (scores kept, boxes awaiting review flagged). Pushing again adds only new samples.
    Push {
        #[command(flatten)]
        at: LabelStudioArgs,
    },
    /// Write the project's submitted annotations back: each submitted sample is marked <reviewed>1</reviewed>
    /// (its boxes rewritten where they changed, review marks cleared); skipped and unannotated tasks leave their
    /// samples alone.
    Pull {
        #[command(flatten)]
        at: LabelStudioArgs,
    },
}

#[derive(clap::Args)]
struct LabelStudioArgs {
    /// A Pascal VOC folder or s3://BUCKET/PREFIX (pull uploads the rewritten annotations there).
    #[arg(long)]
    data: PathBuf,
    /// Label Studio's address, e.g. http://localhost:8080.
    #[arg(long, env = "LABEL_STUDIO_URL")]
    url: String,
    /// A personal access token (Account & Settings), or a legacy token.
    #[arg(long, env = "LABEL_STUDIO_API_KEY", hide_env_values = true)]
    token: String,
    /// The project's title (3 to 50 characters); default: the data folder's name.
    #[arg(long)]
    project: Option<String>,
}

#[derive(Subcommand)]
#[allow(clippy::large_enum_variant)] // parsed once: size does not matter
enum Command {
    /// Accuracy of a pipeline run: mAP@0.5 (VOC, all-point) and mAP@[.5:.95] from two detectionjson logs of the
    /// same frames (source=ground-truth and source=detections); with track ids on both sides (detecttestsrc's
    /// ground truth, detections through detectiontrack) also IDF1, MOTA and ID switches.
    Score {
        #[arg(long)]
        truth: PathBuf,
        #[arg(long)]
        detections: PathBuf,
        /// Print the numbers as JSON.
        #[arg(long)]
        json: bool,
        /// Tracking figures for the greedy-IoU baseline (GStreamer's ioutracker method: detections >= 0.5
        /// matched to the previous frame's at IoU >= 0.3) instead of the log's track ids.
        #[arg(long)]
        greedy_baseline: bool,
    },
    /// Train (or fine-tune) on captures; writes OUT/model.onnx and OUT/best.bpk (best validation mAP),
    /// OUT/checkpoint.bpk + OUT/optimizer.bpk (for --resume), OUT/metrics.csv and OUT/metrics.png every epoch.
    Train {
        /// A Pascal VOC folder, or s3://BUCKET/PREFIX (every device's captures there, mirrored into
        /// $XDG_CACHE_HOME/mobilenetdetect/datasets; only changed objects are downloaded); repeat to merge.
        #[arg(long = "data", required = true)]
        data: Vec<PathBuf>,
        /// Output folder.
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value_t = defaults().epochs)]
        epochs: usize,
        #[arg(long, default_value_t = defaults().batch_size)]
        batch_size: usize,
        /// Square input size in pixels (the exported model's input).
        #[arg(long, default_value_t = defaults().model.input_size)]
        input_size: usize,
        /// MobileNetV2 width multiplier (ImageNet weights exist for 1.0 only).
        #[arg(long, default_value_t = defaults().model.width)]
        width: f32,
        /// Initial weights: `imagenet` (torchvision's MobileNetV2 backbone), `scratch`, or a checkpoint (.bpk)
        /// or ONNX model (ours or a TF-OD SSDLite) to fine-tune — e.g. the model a pipeline runs now. Classes
        /// carry over by name: labels the data adds start afresh, labels it lacks are dropped.
        #[arg(long, default_value = "imagenet")]
        init: String,
        /// The ImageNet weights file (default: what scripts/setup recorded, or $MOBILENETDETECT_PRETRAINED).
        #[arg(long)]
        pretrained: Option<PathBuf>,
        /// adamw or sgd (momentum 0.9).
        #[arg(long, default_value = "adamw")]
        optimizer: String,
        /// Peak learning rate (linear warmup, then cosine decay).
        #[arg(long, default_value_t = defaults().lr)]
        lr: f64,
        #[arg(long, default_value_t = defaults().weight_decay)]
        weight_decay: f64,
        #[arg(long, default_value_t = defaults().warmup_steps)]
        warmup_steps: usize,
        /// Train only the extra layers and heads for this many epochs (they warm up), then the backbone from
        /// --finetune-from-block too. Default: a third of the epochs from ImageNet or a checkpoint (every epoch
        /// with --no-finetune), none from scratch.
        #[arg(long)]
        freeze_backbone_epochs: Option<usize>,
        /// After the frozen epochs, the MobileNetV2 blocks from this one on (0 to 13; 13: the stride-32 stage and
        /// the last 1x1 conv) train at --backbone-lr-scale, the blocks below staying frozen with their output
        /// cached (an epoch stays fast); 0 trains the whole network.
        #[arg(long, default_value_t = defaults().finetune_from_block.unwrap_or(0))]
        finetune_from_block: usize,
        /// Keep the whole backbone frozen in every epoch (only the extra layers and heads learn).
        #[arg(long)]
        no_finetune: bool,
        /// While the backbone is frozen, cache its features for this many augmented versions of each image
        /// (computed once, reused every epoch); 0 computes them every step.
        #[arg(long, default_value_t = defaults().cached_variants)]
        cache_versions: usize,
        /// Memory the feature cache may use.
        #[arg(long, default_value_t = defaults().cache_megabytes)]
        cache_megabytes: usize,
        /// Where the frozen backbone computes the cached features, when not on --device: e.g. libtorch, whose
        /// CPU forward pass is faster than flex's while flex trains the heads faster (benchmarks/training_race).
        #[arg(long)]
        cache_device: Option<String>,
        /// The backbone's learning rate relative to --lr.
        #[arg(long, default_value_t = defaults().backbone_lr_scale)]
        backbone_lr_scale: f64,
        /// Anchor shapes: `fit` (k-means on the training boxes, per map; carried in the checkpoint and the
        /// export) or `ssd` (SSD's generic scales and ratios). Fine-tuning keeps the shapes of --init.
        #[arg(long, default_value = if defaults().fit_anchors { "fit" } else { "ssd" })]
        anchors: String,
        /// Largest zoom-out (expand) factor of the augmentation; 1 turns zoom-out off.
        #[arg(long, default_value_t = defaults().augment.max_zoom_out)]
        max_zoom_out: f32,
        /// Turn off SSD's IoU-constrained random crop.
        #[arg(long)]
        no_crop: bool,
        /// Turn off brightness/contrast/saturation/hue jitter.
        #[arg(long)]
        no_photometric: bool,
        /// Turn off horizontal flips (for classes whose meaning flips, e.g. arrows).
        #[arg(long)]
        no_flip: bool,
        #[arg(long, default_value_t = defaults().seed)]
        seed: u64,
        /// cpu (burn's flex backend), wgpu (a GPU; needs a trainer built with --features wgpu) or libtorch
        /// (LibTorch's CPU kernels; --features tch).
        #[arg(long, default_value = "cpu")]
        device: String,
        /// Continue from OUT/checkpoint.bpk after the epoch it was written at.
        #[arg(long)]
        resume: bool,
        /// Stop after this many epochs without a better validation mAP (0: never).
        #[arg(long, default_value_t = defaults().patience)]
        patience: usize,
        /// Train on the valid samples of a dataset with problems (they are counted and listed).
        #[arg(long)]
        skip_bad: bool,
        /// Train on exactly the samples of this snapshot (`mobilenet-trainer snapshot`, or an earlier
        /// training's OUT/snapshot.json); fails naming every sample that went missing or changed. Without it
        /// the training records what it used in OUT/snapshot.json.
        #[arg(long)]
        snapshot: Option<PathBuf>,
    },
    /// Review captures in Label Studio (push a project, pull the annotations) or CVAT (export a "CVAT for images
    /// 1.1" file, import the reviewed file back).
    Review {
        #[command(subcommand)]
        action: ReviewAction,
    },
    /// Record exactly which samples a dataset holds (name, SHA-256 of image and annotation, labels) for
    /// `train --snapshot`; exported models carry the id of the snapshot they were trained on.
    Snapshot {
        /// A Pascal VOC folder or s3://BUCKET/PREFIX; repeat to merge.
        #[arg(long = "data", required = true)]
        data: Vec<PathBuf>,
        #[arg(long)]
        output: PathBuf,
    },
    /// Accuracy of a checkpoint (.bpk) or an exported model (.onnx, run through ONNX Runtime and the element's
    /// decoding) on a dataset: VOC mAP@0.5, COCO mAP@[.5:.95], per-class AP.
    Eval {
        /// A Pascal VOC folder or s3://BUCKET/PREFIX; repeat to merge.
        #[arg(long = "data", required = true)]
        data: Vec<PathBuf>,
        /// A checkpoint (.bpk) or ONNX model (.onnx).
        #[arg(long)]
        model: PathBuf,
        /// Which images.
        #[arg(long, value_enum, default_value_t = SplitChoice::Val)]
        split: SplitChoice,
        /// Also draw the precision/recall curves into this PNG.
        #[arg(long)]
        pr_curve: Option<PathBuf>,
        /// Print the numbers as JSON.
        #[arg(long)]
        json: bool,
        /// Where a checkpoint runs: cpu, wgpu or libtorch (ONNX models run on ONNX Runtime's CPU provider).
        #[arg(long, default_value = "cpu")]
        device: String,
    },
    /// Export a checkpoint as the ONNX model mobilenetdetect runs with no extra properties (written atomically).
    Export {
        #[arg(long)]
        checkpoint: PathBuf,
        #[arg(long)]
        output: PathBuf,
    },
    /// Turn a MobileNet-SSD ONNX model (a TF Object Detection API SSDLite-MobileNetV2, as mobilenetdetect runs
    /// it, or one of ours) into a checkpoint (OUTPUT/checkpoint.bpk) that train --init, eval and export take.
    Import {
        #[arg(long)]
        model: PathBuf,
        /// Class names, one per line in the model's order (a TensorFlow model carries none).
        #[arg(long)]
        labels: Option<PathBuf>,
        /// The model's anchors, one `cy cx h w` line each in its output order (default: TF-OD's SSD generator).
        #[arg(long)]
        anchors: Option<PathBuf>,
        /// The side a TensorFlow graph resizes its input to.
        #[arg(long, default_value_t = 300)]
        input_size: usize,
        #[arg(long)]
        output: PathBuf,
    },
    /// Validate datasets: per-class counts per split, and every problem (file and line).
    Check {
        /// A Pascal VOC folder (Annotations/, JPEGImages/, labels.txt, optional ImageSets/Main) or
        /// s3://BUCKET/PREFIX; repeat to merge.
        #[arg(long = "data", required = true)]
        data: Vec<PathBuf>,
        /// Warn about every class with fewer than this share of the objects.
        #[arg(long, default_value_t = 0.05)]
        min_class_share: f32,
    },
    /// Publish a model for a fleet: uploads it as PREFIX/model-TIMESTAMP.onnx, then moves PREFIX/latest.onnx to
    /// it in one step (devices running `mobilenetdetect model=s3://…/latest.onnx watch-model=true` swap to it).
    /// S3 endpoint and credentials come from the AWS_* environment variables (AWS_ENDPOINT_URL for MinIO etc.).
    ///
    /// The model must carry the fleet's labels (those of the current latest.onnx, in order) and, with --gate, score
    /// on that regression set within the tolerances of the current latest.onnx; otherwise nothing is published
    /// and the exit status is 1.
    Publish {
        /// The exported model (e.g. OUT/model.onnx).
        #[arg(long)]
        model: PathBuf,
        /// s3://BUCKET/PREFIX of the fleet's models.
        #[arg(long)]
        to: String,
        /// A regression set (Pascal VOC folder or s3://BUCKET/PREFIX; every image counts) on which the model must
        /// not score worse than the current latest.onnx; repeat to merge.
        #[arg(long = "gate")]
        gate: Vec<PathBuf>,
        #[command(flatten)]
        tolerance: Tolerance,
        /// Publish even when the labels differ or the model scores worse (both are still printed).
        #[arg(long)]
        force: bool,
    },
    /// Score two models (checkpoints or ONNX files) on the same images: per-class AP@0.5, mAP and the deltas, and
    /// whether the candidate passes the gate `publish --gate` applies (exit status 1 when it does not).
    Compare {
        /// The model in service (e.g. the fleet's latest.onnx).
        #[arg(long)]
        baseline: PathBuf,
        /// The model that would replace it.
        #[arg(long)]
        candidate: PathBuf,
        /// A Pascal VOC folder or s3://BUCKET/PREFIX; repeat to merge.
        #[arg(long = "data", required = true)]
        data: Vec<PathBuf>,
        /// Which images (a regression set is usually a folder of its own: all).
        #[arg(long, value_enum, default_value_t = SplitChoice::All)]
        split: SplitChoice,
        #[command(flatten)]
        tolerance: Tolerance,
        /// Print the numbers as JSON.
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Score {
            truth,
            detections,
            json,
            greedy_baseline,
        } => match mobilenet_trainer::score::score(
            &truth,
            &detections,
            if greedy_baseline {
                Tracking::GreedyIou {
                    min_iou: 0.3,
                    min_confidence: 0.5,
                }
            } else {
                Tracking::FromLog
            },
        ) {
            Ok(report) => {
                if json {
                    println!("{}", report.json());
                } else {
                    print!("{}", report.table());
                }
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::from(2)
            }
        },
        Command::Train {
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
        } => {
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
            let optimizer = match optimizer.as_str() {
                "adamw" => OptimizerKind::AdamW,
                "sgd" => OptimizerKind::Sgd,
                other => {
                    eprintln!("error: --optimizer {other}: expected adamw or sgd");
                    return ExitCode::from(2);
                }
            };
            let fit_anchors = match anchors.as_str() {
                "fit" => true,
                "ssd" => false,
                other => {
                    eprintln!("error: --anchors {other}: expected fit or ssd");
                    return ExitCode::from(2);
                }
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
                fit_anchors,
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
        Command::Eval {
            data,
            model,
            split,
            pr_curve,
            json,
            device,
        } => {
            let device = match choose_device(&device) {
                Ok(d) => d,
                Err(code) => return code,
            };
            let (merged, samples) = match open_split(&data, split) {
                Ok(m) => m,
                Err(code) => return code,
            };
            let result =
                Detector::open(&model, &device).and_then(|mut d| evaluate_samples(&mut d, &samples, &merged.labels));
            let report = match result {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::FAILURE;
                }
            };
            if json {
                println!("{}", report.json());
            } else {
                print!("{}", report.table());
            }
            if let Some(png) = pr_curve {
                let curves: Vec<_> = report
                    .classes
                    .iter()
                    .map(|c| (c.label.clone(), c.ap50, c.curve.clone()))
                    .collect();
                if let Err(e) = mobilenet_trainer::plot::pr_chart(&png, &curves) {
                    eprintln!("error: {e}");
                    return ExitCode::FAILURE;
                }
            }
            ExitCode::SUCCESS
        }
        Command::Export { checkpoint, output } => {
            let result = mobilenet_trainer::checkpoint::load(&checkpoint, &mobilenet_trainer::device::cpu()).and_then(
                |(model, info)| {
                    let bytes = mobilenet_trainer::export::export_checkpoint(&model, &info);
                    detection_common::files::write_atomically(&output, &bytes)
                        .map_err(|e| format!("cannot write {}: {e}", output.display()))
                },
            );
            match result {
                Ok(()) => {
                    eprintln!("wrote {}", output.display());
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Import {
            model,
            labels,
            anchors,
            input_size,
            output,
        } => match mobilenet_trainer::import::import_to_checkpoint(&model, labels, anchors, input_size, &output) {
            Ok(summary) => {
                eprintln!("{summary}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        },
        Command::Publish {
            model,
            to,
            gate,
            tolerance,
            force,
        } => {
            let regression = if gate.is_empty() {
                None
            } else {
                match open_data(&gate, false) {
                    Ok(m) => Some(m),
                    Err(code) => return code,
                }
            };
            let gate = Gate {
                data: regression.as_ref(),
                tolerance,
                force,
            };
            let result = detection_storage::S3Url::parse(&to)
                .map_err(|e| e.to_string())
                .and_then(|url| mobilenet_trainer::remote::publish(&model, &url, &gate));
            match result {
                Ok(p) => {
                    eprintln!(
                        "published {} ({} bytes); {} now points to it",
                        p.versioned, p.bytes, p.latest
                    );
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Compare {
            baseline,
            candidate,
            data,
            split,
            tolerance,
            json,
        } => {
            let (merged, samples) = match open_split(&data, split) {
                Ok(m) => m,
                Err(code) => return code,
            };
            match Comparison::run(&baseline, &candidate, &samples, &merged.labels) {
                Ok(c) => {
                    if json {
                        println!("{}", c.json(&tolerance));
                    } else {
                        print!("{}", c.table(&tolerance));
                    }
                    if c.regressions(&tolerance).is_empty() {
                        ExitCode::SUCCESS
                    } else {
                        ExitCode::FAILURE
                    }
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::from(2)
                }
            }
        }
        Command::Review { action } => {
            let result = review(action);
            match result {
                Ok(line) => {
                    eprintln!("{line}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Snapshot { data, output } => {
            let merged = match open_data(&data, false) {
                Ok(m) => m,
                Err(code) => return code,
            };
            let result = Snapshot::of(&merged).and_then(|s| {
                detection_common::files::write_atomically(&output, s.to_json().as_bytes())
                    .map_err(|e| format!("cannot write {}: {e}", output.display()))?;
                Ok(s)
            });
            match result {
                Ok(s) => {
                    eprintln!(
                        "snapshot {} of {} samples: {}",
                        s.id(),
                        s.entries.len(),
                        output.display()
                    );
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Check { data, min_class_share } => match resolve_data(&data).and_then(|d| {
            mobilenet_trainer::data::open_all(&d).map_err(|p| {
                eprintln!("error: {p}");
                ExitCode::from(2)
            })
        }) {
            Ok(mut merged) => {
                merged.verify_images();
                print!("{}", merged.report());
                for warning in merged.balance_warnings(min_class_share) {
                    println!("{warning}");
                }
                if merged.problems.is_empty() {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::FAILURE
                }
            }
            Err(code) => code,
        },
    }
}

/// Which images of a dataset `eval` and `compare` score.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum SplitChoice {
    Val,
    Test,
    Train,
    All,
}

impl SplitChoice {
    fn samples(self, merged: &Merged) -> Result<Vec<Sample>, ExitCode> {
        let wanted = match self {
            SplitChoice::Val => Some(Split::Val),
            SplitChoice::Test => Some(Split::Test),
            SplitChoice::Train => Some(Split::Train),
            SplitChoice::All => None,
        };
        let samples: Vec<Sample> = merged
            .samples
            .iter()
            .filter(|s| wanted.is_none_or(|w| s.split == w))
            .cloned()
            .collect();
        if samples.is_empty() {
            let name = wanted.map_or("all", |w| w.as_str());
            eprintln!("error: no images in the {name} split");
            return Err(ExitCode::from(2));
        }
        Ok(samples)
    }
}

/// The datasets and the images of `split` in them (`eval`, `compare`).
fn open_split(data: &[PathBuf], split: SplitChoice) -> Result<(Merged, Vec<Sample>), ExitCode> {
    let merged = open_data(data, false)?;
    let samples = split.samples(&merged)?;
    Ok((merged, samples))
}

/// `--data` with s3:// prefixes mirrored into local folders.
fn resolve_data(data: &[PathBuf]) -> Result<Vec<PathBuf>, ExitCode> {
    mobilenet_trainer::remote::resolve_data(data).map_err(|e| {
        eprintln!("error: {e}");
        ExitCode::from(2)
    })
}

/// Opens and validates the datasets; with problems, prints the report and refuses unless `skip_bad`.
fn open_data(data: &[PathBuf], skip_bad: bool) -> Result<Merged, ExitCode> {
    let data = resolve_data(data)?;
    let mut merged = mobilenet_trainer::data::open_all(&data).map_err(|p| {
        eprintln!("error: {p}");
        ExitCode::from(2)
    })?;
    merged.verify_images();
    if let Some(note) = merged.review_note() {
        eprintln!("{note}");
    }
    if !merged.problems.is_empty() {
        eprint!("{}", merged.report());
        if !skip_bad {
            eprintln!("error: the dataset has problems (fix them, or pass --skip-bad to leave those samples out)");
            return Err(ExitCode::FAILURE);
        }
        eprintln!("skipping {} bad samples", merged.problems.len());
    }
    Ok(merged)
}

fn choose_device(name: &str) -> Result<burn::tensor::Device, ExitCode> {
    mobilenet_trainer::device::parse(name).map_err(|e| {
        eprintln!("error: {e}");
        ExitCode::from(2)
    })
}

/// The training recipe's defaults, shown by --help and used when an option is left out.
fn defaults() -> FitOptions {
    FitOptions::default()
}

fn review(action: ReviewAction) -> Result<String, String> {
    use mobilenet_trainer::review::{cvat, label_studio};
    match action {
        ReviewAction::ExportCvat { data, output } => {
            cvat::export_cvat(&data, &output).map(|n| format!("wrote {n} images' boxes to {}", output.display()))
        }
        ReviewAction::ImportCvat { data, input } => cvat::import_cvat(&data, &input).map(|r| {
            format!(
                "{} samples changed (marked reviewed), {} unchanged",
                r.changed, r.unchanged
            )
        }),
        ReviewAction::Push { at } => {
            let title = label_studio::project_title(at.project.as_deref(), &at.data.to_string_lossy())?;
            let mut server = label_studio::LabelStudio::connect(&at.url, &at.token)?;
            let dir = mobilenet_trainer::remote::resolve_data(std::slice::from_ref(&at.data))?.remove(0);
            let r = label_studio::push(&dir, &mut server, &title)?;
            Ok(format!(
                "project '{title}' ({}/projects/{}){}: {} images uploaded, {} predictions written, {} unchanged",
                at.url.trim_end_matches('/'),
                r.project,
                if r.created { " created" } else { "" },
                r.uploaded,
                r.predictions,
                r.unchanged
            ))
        }
        ReviewAction::Pull { at } => {
            let title = label_studio::project_title(at.project.as_deref(), &at.data.to_string_lossy())?;
            let mut server = label_studio::LabelStudio::connect(&at.url, &at.token)?;
            let dir = mobilenet_trainer::remote::resolve_data(std::slice::from_ref(&at.data))?.remove(0);
            let mut publish = mobilenet_trainer::remote::annotation_publisher(&at.data)?;
            let r = label_studio::pull(&dir, &mut server, &title, &mut publish)?;
            Ok(format!(
                "{} samples changed (marked reviewed), {} unchanged",
                r.changed, r.unchanged
            ))
        }
    }
}
