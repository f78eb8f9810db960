//! `export`, `import` and `publish`: models in and out of the trainer.

use super::open_data;
use mobilenet_trainer::compare::{Gate, Tolerance};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct ExportArgs {
    #[arg(long)]
    pub checkpoint: PathBuf,
    #[arg(long)]
    pub output: PathBuf,
}

impl ExportArgs {
    pub fn run(self) -> ExitCode {
        let ExportArgs { checkpoint, output } = self;
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
}

#[derive(clap::Args)]
pub struct ImportArgs {
    #[arg(long)]
    pub model: PathBuf,
    /// Class names, one per line in the model's order (TensorFlow and pytorch-ssd models carry none;
    /// jetson-inference's labels.txt, BACKGROUND first, is taken as it is).
    #[arg(long)]
    pub labels: Option<PathBuf>,
    /// The model's anchors, one `cy cx h w` line each in its output order (default: TF-OD's SSD generator, or
    /// pytorch-ssd's mb2-ssd-lite priors).
    #[arg(long)]
    pub anchors: Option<PathBuf>,
    /// The side a TensorFlow graph resizes its input to (pytorch-ssd's mb2-ssd-lite: 300 only).
    #[arg(long, default_value_t = 300)]
    pub input_size: usize,
    #[arg(long)]
    pub output: PathBuf,
}

impl ImportArgs {
    pub fn run(self) -> ExitCode {
        let ImportArgs {
            model,
            labels,
            anchors,
            input_size,
            output,
        } = self;
        match mobilenet_trainer::import::import_to_checkpoint(&model, labels, anchors, input_size, &output) {
            Ok(summary) => {
                eprintln!("{summary}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        }
    }
}

#[derive(clap::Args)]
pub struct PublishArgs {
    /// The exported model (e.g. OUT/model.onnx).
    #[arg(long)]
    pub model: PathBuf,
    /// s3://BUCKET/PREFIX of the fleet's models.
    #[arg(long)]
    pub to: String,
    /// A regression set (Pascal VOC folder or s3://BUCKET/PREFIX; every image counts) on which the model must
    /// not score worse than the current latest.onnx; repeat to merge.
    #[arg(long = "gate")]
    pub gate: Vec<PathBuf>,
    #[command(flatten)]
    pub tolerance: Tolerance,
    /// Publish even when the labels differ or the model scores worse (both are still printed).
    #[arg(long)]
    pub force: bool,
    /// Release to this share of the devices first (0-100; a hash of each device's id decides, the same devices
    /// every time): the model becomes release.json's candidate, the rest of the fleet keeps the stable model
    /// until `rollout promote` (or `rollout status --auto`) decides.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub canary: Option<u32>,
    /// Canary devices run the stable model too on 1 inferred frame in this many, to measure agreement.
    #[arg(long, default_value_t = detection_common::release::DEFAULT_SHADOW_EVERY, requires = "canary")]
    pub shadow_every: u32,
}

impl PublishArgs {
    pub fn run(self) -> ExitCode {
        let PublishArgs {
            model,
            to,
            gate,
            tolerance,
            force,
            canary,
            shadow_every,
        } = self;
        let canary = canary.map(|percent| mobilenet_trainer::remote::Canary { percent, shadow_every });
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
            .and_then(|url| mobilenet_trainer::remote::publish(&model, &url, &gate, canary));
        match result {
            Ok(p) if p.release.candidate.is_some() => {
                eprintln!(
                    "published {} ({} bytes) as the candidate of {} for {} % of the devices; the others keep {} \
                     (mobilenet-trainer rollout status|promote|rollback --models {to})",
                    p.versioned, p.bytes, p.manifest, p.release.canary_percent, p.release.stable
                );
                ExitCode::SUCCESS
            }
            Ok(p) => {
                eprintln!(
                    "published {} ({} bytes); {} and {} now point to it",
                    p.versioned, p.bytes, p.latest, p.manifest
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        }
    }
}
