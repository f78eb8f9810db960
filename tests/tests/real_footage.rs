//! The loop on real video, short: benchmarks/real_footage --quick captures 60 frames of OpenCV's vtest.avi
//! (Debian's opencv-doc, fetched once into .deps/media) with the real TF-OD person detector in tests/models/ as
//! the teacher, imports the teacher into the trainer and runs it back through the element, retrains a student
//! (2 epochs at 160) and scores both against the teacher on the next 30 frames; with --add-class it fine-tunes
//! the teacher on those frames with a class added. The same with a pytorch-ssd mb2-ssd-lite person detector
//! (trained in PyTorch, tests/models/README.md) as the teacher: a model born outside mobilenet-trainer.

use std::path::PathBuf;
use std::process::Command;

fn repo() -> PathBuf {
    let manifest =
        std::env::var_os("CARGO_MANIFEST_DIR").map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from);
    manifest.parent().unwrap().to_path_buf()
}

/// The number after the first `prefix` in `out`.
fn figure(out: &str, prefix: &str) -> f64 {
    out.split_once(prefix)
        .and_then(|(_, rest)| rest.split_whitespace().next())
        .and_then(|v| v.trim_end_matches([',', ';']).parse().ok())
        .unwrap_or_else(|| panic!("no '{prefix}' line: {out}"))
}

/// The share of the teacher's boxes that its import gives back (IoU >= 0.95, score within 0.03) on the output
/// line that starts with `line` (benchmarks/same_detections.py's JSON).
fn agreeing(out: &str, line: &str) -> f64 {
    let found = out
        .lines()
        .find(|l| l.starts_with(line))
        .unwrap_or_else(|| panic!("no '{line}' line: {out}"));
    figure(found, "\"agreeing\": ")
}

/// Runs `benchmarks/real_footage` with `args` in a fresh work folder; its output.
fn benchmark(name: &str, args: &[&str]) -> (String, PathBuf) {
    let work = std::env::temp_dir().join(format!("mobilenetdetect-real-footage-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    let out = Command::new(repo().join("benchmarks/real_footage"))
        .args(args)
        .arg("--work")
        .arg(&work)
        .output()
        .expect("benchmarks/real_footage runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    (text, work)
}

#[test]
fn real_footage_quick_imports_the_teacher_and_trains_a_student_on_real_frames() {
    let (text, work) = benchmark("student", &["--quick", "--runs", "1"]);
    // The teacher, imported and exported by the trainer, finds its own boxes: measured 0.98 on the 195 frames
    // of the full benchmark and 0.989 on these 30 (the element resizes the frame where the TensorFlow
    // graph resizes inside, and the NMS is ours).
    let imported = figure(&text, "imported teacher: mAP@0.5 ");
    assert!(imported >= 0.9, "imported teacher {imported}\n{text}");
    // Box by box on the same pixels (frames scaled to 300x300, so the graph's own resize does nothing): every
    // one of the teacher's boxes back at IoU 1.0 and the same score, measured on these 30 frames (144 boxes) and
    // on the full benchmark's 195 (865); on the whole frames only 10-13 % reach IoU 0.95 (median IoU 0.90-0.93):
    // the resize inside the TensorFlow graph is another one than the element's.
    let same_pixels = agreeing(&text, "imported teacher on frames scaled to 300x300");
    assert!(same_pixels >= 0.98, "{same_pixels} of the boxes agree\n{text}");
    // A student trained on real frames: 2 epochs at 160 px only check that everything runs on real footage.
    let student = figure(&text, "run 1: mAP@0.5 ");
    assert!((0.0..=1.0).contains(&student), "{text}");
    let _ = std::fs::remove_dir_all(&work);
}

/// The teacher fine-tuned (`--init` the TF-OD model itself) on 58 captured frames to which a class was added
/// (signs pasted clear of the people): it learns the new class and keeps its own.
#[test]
fn the_imported_teacher_fine_tuned_on_an_added_class_learns_it_and_keeps_its_own() {
    let (text, work) = benchmark("add-class", &["--quick", "--add-class", "--runs", "1"]);
    let teacher = figure(&text, "imported teacher: person AP@0.5 ");
    let person = figure(&text, "run 1: person AP@0.5 ");
    let sign = figure(&text, "sign AP@0.5 ");
    // The goal: the teacher's class within 0.05 of the teacher. Measured (seeds 1-3): person -0.032, -0.001, -0.009; sign AP 0.58-0.62.
    assert!(
        person >= teacher - 0.05,
        "person AP {person}, the teacher's {teacher}\n{text}"
    );
    assert!(sign >= 0.3, "sign AP {sign}\n{text}");
    let _ = std::fs::remove_dir_all(&work);
}

/// The pytorch-ssd teacher and the arguments `benchmarks/real_footage` runs it with (its input scaling).
fn pytorch_ssd_teacher() -> [String; 4] {
    [
        "--teacher".into(),
        repo()
            .join("tests/models/mb2-ssd-lite-person-pytorch.onnx")
            .display()
            .to_string(),
        "--teacher-props".into(),
        "input-mean=127 input-std=128".into(),
    ]
}

#[test]
fn a_pytorch_ssd_detector_imported_and_exported_gives_its_own_boxes_on_real_frames() {
    let teacher = pytorch_ssd_teacher();
    let mut args = vec!["--quick", "--runs", "0"];
    args.extend(teacher.iter().map(String::as_str));
    let (text, work) = benchmark("pytorch-ssd", &args);
    // Each of the original's boxes (score >= 0.5) paired with the export's best box of its class on the same
    // frame: IoU >= 0.95 and a score within 0.03. Measured: every one of 105 boxes on these 30 frames and of 541
    // on the full benchmark's 195, IoU 1.0 and scores equal to 1e-4 (the element resizes for both; the import is
    // exact to float rounding); a box or two lost to another machine's float rounding would still pass.
    for line in [
        "imported teacher, box by box",
        "imported teacher on frames scaled to 300x300",
    ] {
        let share = agreeing(&text, line);
        assert!(share >= 0.98, "{line}: {share} of the boxes agree\n{text}");
    }
    let _ = std::fs::remove_dir_all(&work);
}
