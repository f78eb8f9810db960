//! A short training run from the ImageNet backbone reaches mAP@0.5 >= 0.5 on held-out synthetic images in a
//! few minutes on 2 cores, and `eval` gives the same mAP for the best checkpoint and its ONNX export (the ONNX
//! side runs through ONNX Runtime and the element's decoder); `export` reproduces the trained model.

mod common;
use std::path::Path;
use std::process::Command;

fn trainer(args: &[&str], paths: &[(&str, &Path)]) -> (bool, String, String) {
    let mut c = Command::new(env!("CARGO_BIN_EXE_mobilenet-trainer"));
    c.args(args);
    for (flag, p) in paths {
        c.arg(flag).arg(p);
    }
    let o = c.output().unwrap();
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn map50(json: &str) -> f64 {
    let v: serde_json::Value = serde_json::from_str(json.trim()).unwrap_or_else(|e| panic!("{e}: {json}"));
    v["map50"].as_f64().unwrap()
}

#[test]
fn pretrained_training_generalises_and_checkpoint_and_onnx_agree() {
    if mobilenet_trainer::pretrained::default_weights().is_none() {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI runs scripts/setup, which records the ImageNet weights"
        );
        eprintln!("skipped: no ImageNet weights recorded (run scripts/setup)");
        return;
    }
    let root = std::env::temp_dir().join(format!("trainer-convergence-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let (train, held_out, out) = (root.join("train"), root.join("held-out"), root.join("out"));
    common::write_shapes_voc(&train, 240, 1, 192, 144);
    common::write_shapes_voc(&held_out, 60, 2, 192, 144);
    let started = std::time::Instant::now();
    let (ok, _, log) = trainer(
        &[
            "train",
            "--input-size",
            "160",
            "--epochs",
            "12",
            "--lr",
            "3e-3",
            "--seed",
            "1",
        ],
        &[("--data", &train), ("--out", &out)],
    );
    assert!(ok, "{log}");
    eprintln!("trained in {:.0}s", started.elapsed().as_secs_f64());
    assert!(log.contains("ImageNet weights"), "{log}");
    for file in [
        "best.bpk",
        "checkpoint.bpk",
        "optimizer.bpk",
        "model.onnx",
        "metrics.csv",
        "metrics.png",
    ] {
        assert!(out.join(file).exists(), "{file} missing: {log}");
    }

    let pr = root.join("pr.png");
    let (ok, ckpt_json, log) = trainer(
        &["eval", "--split", "all", "--json"],
        &[
            ("--data", &held_out),
            ("--model", &out.join("best.bpk")),
            ("--pr-curve", &pr),
        ],
    );
    assert!(ok, "{log}");
    let (ok, onnx_json, log) = trainer(
        &["eval", "--split", "all", "--json"],
        &[("--data", &held_out), ("--model", &out.join("model.onnx"))],
    );
    assert!(ok, "{log}");
    let (ckpt, onnx) = (map50(&ckpt_json), map50(&onnx_json));
    eprintln!("held-out mAP@0.5: checkpoint {ckpt:.4}, ONNX {onnx:.4}");
    assert!(ckpt >= 0.5, "held-out mAP@0.5 {ckpt} < 0.5");
    assert!((ckpt - onnx).abs() < 1e-3, "checkpoint {ckpt} vs ONNX {onnx}");
    assert!(std::fs::metadata(&pr).unwrap().len() > 1000);

    // `export` of the best checkpoint is the model training wrote, byte for byte.
    let exported = root.join("exported.onnx");
    let (ok, _, log) = trainer(
        &["export"],
        &[("--checkpoint", &out.join("best.bpk")), ("--output", &exported)],
    );
    assert!(ok, "{log}");
    assert_eq!(
        std::fs::read(&exported).unwrap(),
        std::fs::read(out.join("model.onnx")).unwrap()
    );
    // A model that does not know the data's classes is refused with the image and class named.
    let other = root.join("other");
    common::write_voc(&other, 4, 64);
    let (ok, _, log) = trainer(
        &["eval", "--split", "all"],
        &[("--data", &other), ("--model", &exported)],
    );
    assert!(!ok && log.contains("is not one of the model's"), "{log}");
    std::fs::remove_dir_all(&root).unwrap();
}
