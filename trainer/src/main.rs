//! `mobilenet-trainer`: retrains mobilenetdetect's detector on captured datasets.

mod cli;

use clap::{Parser, Subcommand};
use cli::{dataset, evaluate, models, review, rollout, train};
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
#[allow(clippy::large_enum_variant)] // parsed once: size does not matter
enum Command {
    /// Accuracy of a pipeline run: mAP@0.5 (VOC, all-point) and mAP@[.5:.95] from two detectionjson logs of the
    /// same frames (source=ground-truth and source=detections); with track ids on both sides (detecttestsrc's
    /// ground truth, detections through detectiontrack) also IDF1, MOTA and ID switches.
    Score(evaluate::ScoreArgs),
    /// Train (or fine-tune) on captures; writes OUT/model.onnx and OUT/best.bpk (best validation mAP),
    /// OUT/checkpoint.bpk + OUT/optimizer.bpk (for --resume), OUT/metrics.csv and OUT/metrics.png every epoch.
    Train(train::TrainArgs),
    /// Review captures in Label Studio (push a project, pull the annotations) or CVAT (export a "CVAT for images
    /// 1.1" file, import the reviewed file back).
    #[command(subcommand)]
    Review(review::ReviewAction),
    /// Record exactly which samples a dataset holds (name, SHA-256 of image and annotation, labels) for
    /// `train --snapshot`; exported models carry the id of the snapshot they were trained on.
    Snapshot(dataset::SnapshotArgs),
    /// Accuracy of a checkpoint (.bpk) or an exported model (.onnx, run through ONNX Runtime and the element's
    /// decoding) on a dataset: VOC mAP@0.5, COCO mAP@[.5:.95], per-class AP.
    Eval(evaluate::EvalArgs),
    /// Export a checkpoint as the ONNX model mobilenetdetect runs with no extra properties (written atomically).
    Export(models::ExportArgs),
    /// Turn a MobileNet-SSD ONNX model (a TF Object Detection API SSDLite-MobileNetV2, as mobilenetdetect runs
    /// it, or one of ours) into a checkpoint (OUTPUT/checkpoint.bpk) that train --init, eval and export take.
    Import(models::ImportArgs),
    /// Validate datasets: per-class counts per split, and every problem (file and line).
    Check(dataset::CheckArgs),
    /// Publish a model for a fleet: uploads it as PREFIX/model-TIMESTAMP.onnx, then makes it the stable model of
    /// PREFIX/release.json and moves PREFIX/latest.onnx to it in one step (devices running `mobilenetdetect
    /// model=s3://…/release.json` or `…/latest.onnx` with watch-model=true swap to it); with --canary, only a share
    /// of the devices gets it first (see `rollout`). S3 endpoint and credentials come from the AWS_* environment
    /// variables (AWS_ENDPOINT_URL for MinIO etc.).
    ///
    /// The model must carry the fleet's labels (those of the current latest.onnx, in order) and, with --gate, score
    /// on that regression set within the tolerances of the current latest.onnx; otherwise nothing is published
    /// and the exit status is 1.
    Publish(models::PublishArgs),
    /// Score two models (checkpoints or ONNX files) on the same images: per-class AP@0.5, mAP and the deltas, and
    /// whether the candidate passes the gate `publish --gate` applies (exit status 1 when it does not).
    Compare(evaluate::CompareArgs),
    /// Canary releases: `status` shows the release manifest and the devices' verdicts (agreement with the stable
    /// model in shadow, p95 inference time, failed runs) and, with --auto, promotes or rolls back as they decide;
    /// `promote` and `rollback` do it by hand.
    #[command(subcommand)]
    Rollout(rollout::RolloutAction),
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Score(args) => args.run(),
        Command::Train(args) => args.run(),
        Command::Review(action) => action.run(),
        Command::Snapshot(args) => args.run(),
        Command::Eval(args) => args.run(),
        Command::Export(args) => args.run(),
        Command::Import(args) => args.run(),
        Command::Check(args) => args.run(),
        Command::Publish(args) => args.run(),
        Command::Compare(args) => args.run(),
        Command::Rollout(action) => action.run(),
    }
}
