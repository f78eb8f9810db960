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
