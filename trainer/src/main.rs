//! `mobilenet-trainer`: retrains mobilenetdetect's detector on captured datasets.

use clap::{Parser, Subcommand};
use detection_common::voc::Split;
use mobilenet_trainer::augment::AugmentConfig;
use mobilenet_trainer::data::Merged;
use mobilenet_trainer::evaluate::{Detector, evaluate_samples};
use mobilenet_trainer::fit::{FitOptions, Init, OptimizerKind};
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
enum Command {
    /// Accuracy of a pipeline run: mAP@0.5 (VOC, all-point) and mAP@[.5:.95] from two detectionjson logs of the
    /// same frames (source=ground-truth and source=detections).
    Score {
        #[arg(long)]
        truth: PathBuf,
        #[arg(long)]
        detections: PathBuf,
        /// Print the numbers as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Train (or fine-tune) on captures; writes OUT/model.onnx and OUT/best.bpk (best validation mAP),
    /// OUT/checkpoint.bpk + OUT/optimizer.bpk (for --resume), OUT/metrics.csv and OUT/metrics.png every epoch.
    Train {
        /// A Pascal VOC folder; repeat to merge.
        #[arg(long = "data", required = true)]
        data: Vec<PathBuf>,
        /// Output folder.
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value_t = 30)]
        epochs: usize,
        #[arg(long, default_value_t = 16)]
        batch_size: usize,
        /// Square input size in pixels (the exported model's input).
        #[arg(long, default_value_t = 300)]
        input_size: usize,
        /// MobileNetV2 width multiplier (ImageNet weights exist for 1.0 only).
        #[arg(long, default_value_t = 1.0)]
        width: f32,
        /// Initial weights: `imagenet` (torchvision's MobileNetV2 backbone), `scratch`, or a checkpoint (.bpk)
        /// or exported model (.onnx) of ours to fine-tune — e.g. the model a pipeline runs now (new classes
        /// added at the end of labels.txt are allowed).
        #[arg(long, default_value = "imagenet")]
        init: String,
        /// The ImageNet weights file (default: what scripts/setup recorded, or $MOBILENETDETECT_PRETRAINED).
        #[arg(long)]
        pretrained: Option<PathBuf>,
        /// adamw or sgd (momentum 0.9).
        #[arg(long, default_value = "adamw")]
        optimizer: String,
        /// Peak learning rate (linear warmup, then cosine decay).
        #[arg(long, default_value_t = 1e-3)]
        lr: f64,
        #[arg(long, default_value_t = 1e-4)]
        weight_decay: f64,
        #[arg(long, default_value_t = 100)]
        warmup_steps: usize,
        /// Train only the extra layers and heads for this many epochs, then the whole network. Default: every
        /// epoch when starting from ImageNet or a checkpoint (the fast CPU recipe), none from scratch.
        #[arg(long)]
        freeze_backbone_epochs: Option<usize>,
        /// While the backbone is frozen, cache its features for this many augmented versions of each image
        /// (computed once, reused every epoch); 0 computes them every step.
        #[arg(long, default_value_t = 4)]
        cache_versions: usize,
        /// Memory the feature cache may use.
        #[arg(long, default_value_t = 4096)]
        cache_megabytes: usize,
        /// The backbone's learning rate relative to --lr.
        #[arg(long, default_value_t = 0.1)]
        backbone_lr_scale: f64,
        /// Largest zoom-out (expand) factor of the augmentation; 1 turns zoom-out off.
        #[arg(long, default_value_t = 3.0)]
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
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// cpu (burn's flex backend) or wgpu (a GPU; needs a trainer built with --features wgpu).
        #[arg(long, default_value = "cpu")]
        device: String,
        /// Continue from OUT/checkpoint.bpk after the epoch it was written at.
        #[arg(long)]
        resume: bool,
        /// Stop after this many epochs without a better validation mAP (0: never).
        #[arg(long, default_value_t = 0)]
        patience: usize,
        /// Train on the valid samples of a dataset with problems (they are counted and listed).
        #[arg(long)]
        skip_bad: bool,
    },
    /// Accuracy of a checkpoint (.bpk) or an exported model (.onnx, run through ONNX Runtime and the element's
    /// decoding) on a dataset: VOC mAP@0.5, COCO mAP@[.5:.95], per-class AP.
    Eval {
        /// A Pascal VOC folder; repeat to merge.
        #[arg(long = "data", required = true)]
        data: Vec<PathBuf>,
        /// A checkpoint (.bpk) or ONNX model (.onnx).
        #[arg(long)]
        model: PathBuf,
        /// Which images: val, test, train or all.
        #[arg(long, default_value = "val")]
        split: String,
        /// Also draw the precision/recall curves into this PNG.
        #[arg(long)]
        pr_curve: Option<PathBuf>,
        /// Print the numbers as JSON.
        #[arg(long)]
        json: bool,
        /// Where a checkpoint runs: cpu or wgpu (ONNX models run on ONNX Runtime's CPU provider).
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
    /// Validate datasets: per-class counts per split, and every problem (file and line).
    Check {
        /// A Pascal VOC folder (Annotations/, JPEGImages/, labels.txt, optional ImageSets/Main); repeat to merge.
        #[arg(long = "data", required = true)]
        data: Vec<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Score {
            truth,
            detections,
            json,
        } => match mobilenet_trainer::score::score(&truth, &detections) {
            Ok((eval, names, coco)) => {
                if json {
                    let per_class: Vec<String> = eval
                        .classes
                        .iter()
                        .map(|(id, c)| {
                            format!(
                                "{{\"label\":{:?},\"ap50\":{:.4},\"objects\":{}}}",
                                names[id], c.ap, c.ground_truths
                            )
                        })
                        .collect();
                    println!(
                        "{{\"map50\":{:.4},\"map50_95\":{:.4},\"classes\":[{}]}}",
                        eval.map,
                        coco,
                        per_class.join(",")
                    );
                } else {
                    for (id, c) in &eval.classes {
                        println!(
                            "{:<20} AP@0.5 {:.3}  ({} objects, {} detections)",
                            names[id], c.ap, c.ground_truths, c.predictions
                        );
                    }
                    println!("mAP@0.5 {:.3}   mAP@[.5:.95] {:.3}", eval.map, coco);
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
            cache_versions,
            cache_megabytes,
            backbone_lr_scale,
            max_zoom_out,
            no_crop,
            no_photometric,
            no_flip,
            seed,
            device,
            resume,
            patience,
            skip_bad,
        } => {
            if let Err(code) = choose_device(&device) {
                return code;
            }
            let merged = match open_data(&data, skip_bad) {
                Ok(m) => m,
                Err(code) => return code,
            };
            let init = match init.as_str() {
                "imagenet" => match pretrained.or_else(mobilenet_trainer::pretrained::default_weights) {
                    Some(p) => Init::ImageNet(p),
                    None => {
                        eprintln!(
                            "error: no ImageNet weights: run scripts/setup, give --pretrained FILE ({}), or --init scratch",
                            mobilenet_trainer::pretrained::WEIGHTS_FILE
                        );
                        return ExitCode::from(2);
                    }
                },
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
            if !(1.0..=8.0).contains(&max_zoom_out) {
                eprintln!("error: --max-zoom-out {max_zoom_out}: expected 1 to 8");
                return ExitCode::from(2);
            }
            let freeze_backbone_epochs =
                freeze_backbone_epochs.unwrap_or(if init == Init::Scratch { 0 } else { epochs });
            let opts = FitOptions {
                epochs,
                cached_variants: cache_versions,
                cache_megabytes,
                batch_size: batch_size.max(1),
                input_size,
                width,
                lr,
                warmup_steps,
                seed,
                resume,
                patience,
                init,
                optimizer,
                weight_decay,
                freeze_backbone_epochs,
                backbone_lr_scale,
                augment: AugmentConfig {
                    max_zoom_out,
                    zoom_out_probability: if max_zoom_out > 1.0 { 0.5 } else { 0.0 },
                    crop: !no_crop,
                    flip: !no_flip,
                    photometric: !no_photometric,
                },
                ..FitOptions::new(out)
            };
            match mobilenet_trainer::fit::fit(&merged, &opts) {
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
            if let Err(code) = choose_device(&device) {
                return code;
            }
            let merged = match open_data(&data, false) {
                Ok(m) => m,
                Err(code) => return code,
            };
            let wanted = match split.as_str() {
                "train" => Some(Split::Train),
                "val" => Some(Split::Val),
                "test" => Some(Split::Test),
                "all" => None,
                other => {
                    eprintln!("error: --split {other}: expected val, test, train or all");
                    return ExitCode::from(2);
                }
            };
            let samples: Vec<_> = merged
                .samples
                .iter()
                .filter(|s| wanted.is_none_or(|w| s.split == w))
                .cloned()
                .collect();
            if samples.is_empty() {
                eprintln!("error: no images in the {split} split");
                return ExitCode::from(2);
            }
            let result = Detector::open(&model).and_then(|mut d| evaluate_samples(&mut d, &samples, &merged.labels));
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
            let result = mobilenet_trainer::checkpoint::load(&checkpoint, &mobilenet_trainer::device::compute())
                .and_then(|(model, info)| {
                    let bytes = mobilenet_trainer::export::export_onnx(&model, &info.config, &info.labels);
                    detection_common::onnx::write_atomically(&output, &bytes)
                        .map_err(|e| format!("cannot write {}: {e}", output.display()))
                });
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
        Command::Check { data } => match mobilenet_trainer::data::open_all(&data) {
            Ok(mut merged) => {
                merged.verify_images();
                print!("{}", merged.report());
                if merged.problems.is_empty() {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::FAILURE
                }
            }
            Err(p) => {
                eprintln!("error: {p}");
                ExitCode::from(2)
            }
        },
    }
}

/// Opens and validates the datasets; with problems, prints the report and refuses unless `skip_bad`.
fn open_data(data: &[PathBuf], skip_bad: bool) -> Result<Merged, ExitCode> {
    let mut merged = mobilenet_trainer::data::open_all(data).map_err(|p| {
        eprintln!("error: {p}");
        ExitCode::from(2)
    })?;
    merged.verify_images();
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

fn choose_device(name: &str) -> Result<(), ExitCode> {
    let kind = mobilenet_trainer::device::parse(name).map_err(|e| {
        eprintln!("error: {e}");
        ExitCode::from(2)
    })?;
    mobilenet_trainer::device::select(kind);
    Ok(())
}
