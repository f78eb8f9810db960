//! `score`, `eval` and `compare`: how good a model is, from a pipeline's logs or on a dataset.

use super::{SplitChoice, choose_device, open_split};
use mobilenet_trainer::compare::{Comparison, Tolerance};
use mobilenet_trainer::evaluate::{Detector, evaluate_samples};
use mobilenet_trainer::score::Tracking;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct ScoreArgs {
    #[arg(long)]
    pub truth: PathBuf,
    #[arg(long)]
    pub detections: PathBuf,
    /// Print the numbers as JSON.
    #[arg(long)]
    pub json: bool,
    /// Tracking figures for the greedy-IoU baseline (GStreamer's ioutracker method: detections >= 0.5
    /// matched to the previous frame's at IoU >= 0.3) instead of the log's track ids.
    #[arg(long)]
    pub greedy_baseline: bool,
}

impl ScoreArgs {
    pub fn run(self) -> ExitCode {
        let ScoreArgs {
            truth,
            detections,
            json,
            greedy_baseline,
        } = self;
        match mobilenet_trainer::score::score(
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
        }
    }
}

#[derive(clap::Args)]
pub struct EvalArgs {
    /// A Pascal VOC folder or s3://BUCKET/PREFIX; repeat to merge.
    #[arg(long = "data", required = true)]
    pub data: Vec<PathBuf>,
    /// A checkpoint (.bpk) or ONNX model (.onnx).
    #[arg(long)]
    pub model: PathBuf,
    /// Which images.
    #[arg(long, value_enum, default_value_t = SplitChoice::Val)]
    pub split: SplitChoice,
    /// Also draw the precision/recall curves into this PNG.
    #[arg(long)]
    pub pr_curve: Option<PathBuf>,
    /// Print the numbers as JSON.
    #[arg(long)]
    pub json: bool,
    /// Where a checkpoint runs: cpu, wgpu or libtorch (ONNX models run on ONNX Runtime's CPU provider).
    #[arg(long, default_value = "cpu")]
    pub device: String,
}

impl EvalArgs {
    pub fn run(self) -> ExitCode {
        let EvalArgs {
            data,
            model,
            split,
            pr_curve,
            json,
            device,
        } = self;
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
}

#[derive(clap::Args)]
pub struct CompareArgs {
    /// The model in service (e.g. the fleet's latest.onnx).
    #[arg(long)]
    pub baseline: PathBuf,
    /// The model that would replace it.
    #[arg(long)]
    pub candidate: PathBuf,
    /// A Pascal VOC folder or s3://BUCKET/PREFIX; repeat to merge.
    #[arg(long = "data", required = true)]
    pub data: Vec<PathBuf>,
    /// Which images (a regression set is usually a folder of its own: all).
    #[arg(long, value_enum, default_value_t = SplitChoice::All)]
    pub split: SplitChoice,
    #[command(flatten)]
    pub tolerance: Tolerance,
    /// Print the numbers as JSON.
    #[arg(long)]
    pub json: bool,
}

impl CompareArgs {
    pub fn run(self) -> ExitCode {
        let CompareArgs {
            baseline,
            candidate,
            data,
            split,
            tolerance,
            json,
        } = self;
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
}
