//! The ready-to-run pipelines in pipelines/, each run the way a user would, on short synthetic input (the
//! camera replaced by detecttestsrc).

use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    // The run-time value first: clones at other paths share one persistent target dir, and a test binary
    // built in one of them must not reach into the other.
    let manifest =
        std::env::var_os("CARGO_MANIFEST_DIR").map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from);
    manifest.parent().unwrap().to_path_buf()
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("mobilenetdetect-e2e-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn script(name: &str, args: &[&str]) -> (i32, String) {
    let out = Command::new(repo().join("pipelines").join(name))
        .args(args)
        .output()
        .expect("script runs");
    (
        out.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

fn ball_model(dir: &Path) -> String {
    let p = dir.join("ball.onnx");
    std::fs::write(
        &p,
        mobilenetdetect_testkit::models::blob_detector_model(320, 240, "ball"),
    )
    .unwrap();
    p.display().to_string()
}

#[test]
fn every_script_has_help_and_rejects_missing_arguments() {
    for s in ["demo", "dashcam", "robot", "capture", "retrain"] {
        let (code, out) = script(s, &["--help"]);
        assert_eq!(code, 0, "{s} --help: {out}");
        assert!(out.contains("Usage: pipelines/"), "{s}: {out}");
    }
    for s in ["dashcam", "robot", "capture", "retrain"] {
        let (code, _) = script(s, &[]);
        assert_eq!(code, 2, "{s} without arguments");
    }
}

#[test]
fn dashcam_writes_an_mp4_and_a_json_log_that_plays_back() {
    let d = tmp("dashcam");
    let model = ball_model(&d);
    let (mp4, json) = (d.join("out.mp4"), d.join("out.jsonl"));
    let (code, out) = script(
        "dashcam",
        &[
            "--model",
            &model,
            "--test-source",
            "--frames",
            "12",
            "--output",
            mp4.to_str().unwrap(),
            "--json",
            json.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 0, "{out}");
    assert_eq!(std::fs::read_to_string(&json).unwrap().lines().count(), 12);
    // The MP4 is a real video: run it through the dashcam again, as a file input.
    let json2 = d.join("replay.jsonl");
    let (code, out) = script(
        "dashcam",
        &[
            "--model",
            &model,
            "--input",
            mp4.to_str().unwrap(),
            "--output",
            d.join("replay.mp4").to_str().unwrap(),
            "--json",
            json2.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        std::fs::read_to_string(&json2).unwrap().lines().count(),
        12,
        "12 frames decoded back"
    );
}

#[test]
fn robot_streams_json_per_frame() {
    let d = tmp("robot");
    let model = ball_model(&d);
    let log = d.join("robot.jsonl");
    let (code, out) = script(
        "robot",
        &[
            "--model",
            &model,
            "--test-source",
            "--frames",
            "8",
            "--to",
            log.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 0, "{out}");
    let text = std::fs::read_to_string(&log).unwrap();
    // Live mode (the robot's default) passes every frame on.
    assert_eq!(text.lines().count(), 8);
    assert!(text.lines().all(|l| l.starts_with("{\"frame\":")));
}

#[test]
fn capture_builds_a_dataset() {
    let d = tmp("capture");
    let dataset = d.join("ds");
    let (code, out) = script(
        "capture",
        &[
            "--test-source",
            "--ground-truth",
            "--dataset",
            dataset.to_str().unwrap(),
            "--frames",
            "20",
            "--every",
            "4",
        ],
    );
    assert_eq!(code, 0, "{out}");
    let ds = detection_common::voc::Dataset::open(&dataset).unwrap();
    assert_eq!(ds.samples.len(), 5);
    assert!(ds.problems.is_empty(), "{:?}", ds.problems);
    // Detections with an uncertain band: the ball detector's confidences are about 0.8-0.9.
    let model = ball_model(&d);
    let hard = d.join("hard");
    let (code, out) = script(
        "capture",
        &[
            "--model",
            &model,
            "--test-source",
            "--dataset",
            hard.to_str().unwrap(),
            "--frames",
            "10",
            "--every",
            "1",
            "--band",
            "0.0,0.01",
            "--negatives",
            "0",
        ],
    );
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        detection_common::voc::Dataset::open(&hard).unwrap().samples.len(),
        0,
        "nothing in an empty band"
    );

    // Recorded footage labelled by a detector (a teacher): a file in any container decodebin plays.
    let clip = d.join("drive.avi");
    let made = Command::new("gst-launch-1.0")
        .args(["-q", "videotestsrc", "num-buffers=30", "pattern=ball", "!"])
        .args([
            "video/x-raw,width=320,height=240",
            "!",
            "jpegenc",
            "!",
            "avimux",
            "!",
            "filesink",
        ])
        .arg(format!("location={}", clip.display()))
        .status()
        .unwrap();
    assert!(made.success());
    let taught = d.join("taught");
    let (code, out) = script(
        "capture",
        &[
            "--input",
            clip.to_str().unwrap(),
            "--model",
            &model,
            "--dataset",
            taught.to_str().unwrap(),
            "--band",
            "0.5,1",
            "--negatives",
            "1",
            "--every",
            "5",
        ],
    );
    assert_eq!(code, 0, "{out}");
    let ds = detection_common::voc::Dataset::open(&taught).unwrap();
    assert_eq!(
        ds.samples.len(),
        6,
        "every 5th of 30 frames, none skipped: a file waits for the writer"
    );
    assert!(
        ds.samples
            .iter()
            .any(|s| s.annotation.objects.iter().any(|o| o.name == "ball")),
        "the teacher's boxes are the labels"
    );
    let (code, out) = script(
        "capture",
        &["--input", "/nonexistent.mp4", "--model", &model, "--dataset", "x"],
    );
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("/nonexistent.mp4"), "{out}");
}

#[test]
fn retrain_replaces_the_model_a_pipeline_watches() {
    let d = tmp("retrain");
    let dataset = d.join("ds");
    let (code, out) = script(
        "capture",
        &[
            "--test-source",
            "--ground-truth",
            "--dataset",
            dataset.to_str().unwrap(),
            "--frames",
            "48",
            "--every",
            "2",
        ],
    );
    assert_eq!(code, 0, "{out}");
    let model = d.join("live/model.onnx");
    std::fs::create_dir_all(model.parent().unwrap()).unwrap();
    std::fs::write(&model, b"the previous model").unwrap();
    let (code, out) = script(
        "retrain",
        &[
            "--data",
            dataset.to_str().unwrap(),
            "--model",
            model.to_str().unwrap(),
            "--epochs",
            "1",
            "--input-size",
            "96",
            "--width",
            "0.35",
        ],
    );
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("new model in place"), "{out}");
    let bytes = std::fs::read(&model).unwrap();
    assert!(
        bytes.len() > 100_000 && bytes != b"the previous model",
        "replaced by an ONNX model"
    );
    assert!(d.join("live/model.onnx.training/metrics.csv").exists());
    // Nothing half-written is left beside it.
    let names: Vec<String> = std::fs::read_dir(model.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .collect();
    assert!(!names.iter().any(|n| n.ends_with(".tmp")), "{names:?}");
}

/// The closed loop, as the README's main job runs it: detecttestsrc -> detectioncapture (18 short clips, a
/// scene each) -> mobilenet-trainer (ImageNet backbone, anchors fitted to the boxes, upper blocks fine-tuned) ->
/// mobilenetdetect on a held-out clip of another seed -> detectionjson -> score. The retrained model must reach
/// mAP@0.5 >= 0.90 against the source's ground truth.
///
/// The demo trains with `--seed 1`, which fixes the initial weights too: this run measures 0.945 (up to float
/// rounding across threads); the recipe before the fine-tuning (backbone frozen throughout) measured 0.8485 and
/// 0.8593, and one unseeded run of it 0.918, so the initial draw alone moves it by about 0.07. The bar sits
/// below the seeded run by most of that and above the frozen recipe's seeded runs.
#[test]
fn the_loop_captures_trains_and_detects_a_held_out_clip_at_map_0_90() {
    let d = tmp("loop");
    let (code, out) = script(
        "demo",
        // The demo's own defaults: what the README's main job measures.
        &["--work", d.to_str().unwrap()],
    );
    assert_eq!(code, 0, "{out}");
    let map: f64 = out
        .lines()
        .find_map(|l| l.strip_prefix("mAP@0.5 "))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no mAP printed: {out}"));
    eprintln!("held-out clip mAP@0.5 {map}");
    assert!(map >= 0.90, "mAP@0.5 {map} < 0.90\n{out}");
    // The tracker runs on the same clip: it must do better than greedy IoU matching (the demo prints both).
    let idf1 = |prefix: &str| -> f64 {
        out.lines()
            .find_map(|l| l.strip_prefix(prefix))
            .and_then(|rest| rest.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no '{prefix}' line: {out}"))
    };
    let (tracked, greedy) = (idf1("tracking: "), idf1("baseline (greedy IoU): "));
    eprintln!("held-out clip IDF1 {tracked} (greedy IoU {greedy})");
    assert!(tracked > greedy + 0.2, "IDF1 {tracked} vs greedy {greedy}\n{out}");
    // One JSON line per frame of the held-out clip on both sides, and a playable video.
    for f in ["truth.jsonl", "detections.jsonl"] {
        let n = std::fs::read_to_string(d.join(f)).unwrap().lines().count();
        assert_eq!(n, 600, "{f}");
    }
    assert!(std::fs::metadata(d.join("detections.mp4")).unwrap().len() > 10_000);
    let _ = std::fs::remove_dir_all(&d);
}
