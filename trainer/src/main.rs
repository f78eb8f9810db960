//! `mobilenet-trainer`: retrains mobilenetdetect's detector on captured datasets.

use clap::{Parser, Subcommand};
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
    /// Train (or fine-tune) on captures; writes OUT/model.onnx (best validation mAP), OUT/checkpoint.bpk and
    /// OUT/metrics.csv after every epoch.
    Train {
        /// A Pascal VOC folder; repeat to merge.
        #[arg(long = "data", required = true)]
        data: Vec<PathBuf>,
        /// Output folder.
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value_t = 30)]
        epochs: usize,
        #[arg(long, default_value_t = 8)]
        batch_size: usize,
        /// Square input size in pixels.
        #[arg(long, default_value_t = 300)]
        input_size: usize,
        /// MobileNetV2 width multiplier.
        #[arg(long, default_value_t = 1.0)]
        width: f32,
        /// Peak learning rate (AdamW, linear warmup then cosine decay).
        #[arg(long, default_value_t = 1e-3)]
        lr: f64,
        #[arg(long, default_value_t = 100)]
        warmup_steps: usize,
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Continue from OUT/checkpoint.bpk after the last epoch in OUT/metrics.csv.
        #[arg(long)]
        resume: bool,
        /// Stop after this many epochs without a better validation mAP (0: never).
        #[arg(long, default_value_t = 0)]
        patience: usize,
        /// Train on the valid samples of a dataset with problems (they are counted and listed).
        #[arg(long)]
        skip_bad: bool,
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
            lr,
            warmup_steps,
            seed,
            resume,
            patience,
            skip_bad,
        } => {
            let merged = match mobilenet_trainer::data::open_all(&data) {
                Ok(m) => m,
                Err(p) => {
                    eprintln!("error: {p}");
                    return ExitCode::from(2);
                }
            };
            if !merged.problems.is_empty() {
                eprint!("{}", merged.report());
                if !skip_bad {
                    eprintln!(
                        "error: the dataset has problems (fix them, or pass --skip-bad to leave those samples out)"
                    );
                    return ExitCode::FAILURE;
                }
                eprintln!("skipping {} bad samples", merged.problems.len());
            }
            let opts = mobilenet_trainer::fit::FitOptions {
                out,
                epochs,
                batch_size,
                input_size,
                width,
                lr,
                warmup_steps,
                seed,
                resume,
                patience,
            };
            match mobilenet_trainer::fit::fit(&merged, &opts) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Check { data } => match mobilenet_trainer::data::open_all(&data) {
            Ok(merged) => {
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
