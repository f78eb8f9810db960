//! The loop on real video, short: benchmarks/real_footage --quick captures 60 frames of OpenCV's vtest.avi
//! (Debian's opencv-doc, fetched once into .deps/media) with the real TF-OD person detector in tests/models/ as
//! the teacher, imports the teacher into the trainer and runs it back through the element, retrains a student
//! (2 epochs at 160) and scores both against the teacher on the next 30 frames; with --add-class it fine-tunes
//! the teacher on those frames with a class added.

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
