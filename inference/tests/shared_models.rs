//! Many streams, one model: `Model::shared` gives every user asking for the same model (same options, same
//! file) the same loaded session, and a new one when anything differs or the file is replaced.

use detection_inference::ClassGate;
use detection_inference::{Model, ModelOptions, PostProcess, Provider};
use mobilenetdetect_testkit::models::{self, ImageInput};
use std::sync::Arc;

fn model_file(name: &str, label_score: f32) -> std::path::PathBuf {
    let bytes = models::decoded_model(
        ImageInput::nchw(16, 16),
        &[[0.1, 0.1, 0.5, 0.5]],
        &[vec![0.0, label_score]],
        ("boxes", "scores"),
        &[],
    );
    let path = std::env::temp_dir().join(format!("mobilenetdetect-shared-{}-{name}.onnx", std::process::id()));
    std::fs::write(&path, bytes).unwrap();
    path
}

fn options(path: &std::path::Path, threads: u32) -> ModelOptions {
    ModelOptions {
        path: path.to_path_buf(),
        providers: vec![Provider::Cpu],
        threads,
        ..Default::default()
    }
}

#[test]
fn the_same_model_is_loaded_once_and_shared_across_threads() {
    let path = model_file("same", 0.9);
    let a = Model::shared(&options(&path, 1)).unwrap();
    let b = Model::shared(&options(&path, 1)).unwrap();
    assert!(Arc::ptr_eq(&a, &b), "same options, same file: one model");
    // Other options: another session.
    let c = Model::shared(&options(&path, 2)).unwrap();
    assert!(!Arc::ptr_eq(&a, &c));
    // Four threads run the one session at once; each gets its own, correct detections.
    let post = PostProcess {
        gate: ClassGate::new(0.5, "", "", &a.labels).unwrap(),
        iou_threshold: 0.45,
        max_detections: 10,
    };
    let spec = a.input.tensor_spec(16, 16);
    std::thread::scope(|s| {
        for _ in 0..4 {
            let (model, post, spec) = (a.clone(), post.clone(), spec.clone());
            s.spawn(move || {
                let input = vec![0.0f32; 3 * 16 * 16];
                let mut out = Vec::new();
                for _ in 0..50 {
                    model.detect(&spec, &input, &[], &post, &mut out).unwrap();
                    assert_eq!(out.len(), 1);
                    assert!((out[0].score - 0.9).abs() < 1e-6);
                }
            });
        }
    });
    // A replaced file is another model; once nobody uses a model, asking again loads it afresh.
    drop((b, c));
    std::thread::sleep(std::time::Duration::from_millis(20));
    std::fs::write(
        &path,
        models::decoded_model(
            ImageInput::nchw(16, 16),
            &[[0.1, 0.1, 0.5, 0.5]],
            &[vec![0.0, 0.7]],
            ("boxes", "scores"),
            &[],
        ),
    )
    .unwrap();
    let d = Model::shared(&options(&path, 1)).unwrap();
    assert!(!Arc::ptr_eq(&a, &d), "the file changed");
    let weak = Arc::downgrade(&d);
    drop(d);
    assert!(weak.upgrade().is_none(), "the cache does not keep a model alive");
    std::fs::remove_file(&path).unwrap();
}
