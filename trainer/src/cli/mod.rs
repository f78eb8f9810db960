//! The commands of `mobilenet-trainer`, one file per group: each command's options are a struct that runs itself.
//! Shared here: opening `--data` (folders or s3:// prefixes) and choosing a device, with the exit status a
//! failure gives (2: bad input, 1: the work failed).

pub mod dataset;
pub mod evaluate;
pub mod models;
pub mod review;
pub mod rollout;
pub mod train;

use detection_common::voc::{Sample, Split};
use mobilenet_trainer::data::Merged;
use std::path::PathBuf;
use std::process::ExitCode;

/// Which images of a dataset `eval` and `compare` score.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SplitChoice {
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
pub fn open_split(data: &[PathBuf], split: SplitChoice) -> Result<(Merged, Vec<Sample>), ExitCode> {
    let merged = open_data(data, false)?;
    let samples = split.samples(&merged)?;
    Ok((merged, samples))
}

/// `--data` with s3:// prefixes mirrored into local folders.
pub fn resolve_data(data: &[PathBuf]) -> Result<Vec<PathBuf>, ExitCode> {
    mobilenet_trainer::remote::resolve_data(data).map_err(|e| {
        eprintln!("error: {e}");
        ExitCode::from(2)
    })
}

/// Opens and validates the datasets; with problems, prints the report and refuses unless `skip_bad`.
pub fn open_data(data: &[PathBuf], skip_bad: bool) -> Result<Merged, ExitCode> {
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

pub fn choose_device(name: &str) -> Result<burn::tensor::Device, ExitCode> {
    mobilenet_trainer::device::parse(name).map_err(|e| {
        eprintln!("error: {e}");
        ExitCode::from(2)
    })
}
