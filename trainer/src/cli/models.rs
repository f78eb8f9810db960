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
    /// Class names, one per line in the model's order (a TensorFlow model carries none).
    #[arg(long)]
    pub labels: Option<PathBuf>,
    /// The model's anchors, one `cy cx h w` line each in its output order (default: TF-OD's SSD generator).
    #[arg(long)]
    pub anchors: Option<PathBuf>,
    /// The side a TensorFlow graph resizes its input to.
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
}

impl PublishArgs {
    pub fn run(self) -> ExitCode {
        let PublishArgs {
            model,
            to,
            gate,
            tolerance,
            force,
        } = self;
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
}
