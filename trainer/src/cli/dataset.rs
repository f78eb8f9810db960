//! `check` and `snapshot`: what a dataset holds.

use super::{open_data, resolve_data};
use mobilenet_trainer::snapshot::Snapshot;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct CheckArgs {
    /// A Pascal VOC folder (Annotations/, JPEGImages/, labels.txt, optional ImageSets/Main) or
    /// s3://BUCKET/PREFIX; repeat to merge.
    #[arg(long = "data", required = true)]
    pub data: Vec<PathBuf>,
    /// Warn about every class with fewer than this share of the objects.
    #[arg(long, default_value_t = 0.05)]
    pub min_class_share: f32,
}

impl CheckArgs {
    pub fn run(self) -> ExitCode {
        let CheckArgs { data, min_class_share } = self;
        match resolve_data(&data).and_then(|d| {
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
        }
    }
}

#[derive(clap::Args)]
pub struct SnapshotArgs {
    /// A Pascal VOC folder or s3://BUCKET/PREFIX; repeat to merge.
    #[arg(long = "data", required = true)]
    pub data: Vec<PathBuf>,
    #[arg(long)]
    pub output: PathBuf,
}

impl SnapshotArgs {
    pub fn run(self) -> ExitCode {
        let SnapshotArgs { data, output } = self;
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
}
