//! `mobilenet-trainer train` end to end on a small synthetic VOC set: checkpoints, metrics, an exported model
//! mobilenetdetect loads, resume, and a broken dataset refused unless --skip-bad.

mod common;
use std::path::Path;
use std::process::Command;

fn train(data: &Path, out: &Path, extra: &[&str]) -> (i32, String) {
    let mut c = Command::new(env!("CARGO_BIN_EXE_mobilenet-trainer"));
    c.args(["train", "--data"]).arg(data).arg("--out").arg(out);
    c.args([
        "--input-size",
        "96",
        "--width",
        "0.35",
        "--batch-size",
        "8",
        "--warmup-steps",
        "5",
        "--init",
        "scratch",
    ]);
    c.args(extra);
    let o = c.output().unwrap();
    (
        o.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        ),
    )
}

#[test]
fn trains_exports_and_resumes() {
    let root = std::env::temp_dir().join(format!("trainer-cli-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let (data, out) = (root.join("data"), root.join("out"));
    common::write_voc(&data, 40, 96);
    let (code, log) = train(&data, &out, &["--epochs", "2"]);
    assert_eq!(code, 0, "{log}");
    assert!(log.contains("val mAP@0.5"), "{log}");
    let metrics = std::fs::read_to_string(out.join("metrics.csv")).unwrap();
    assert_eq!(metrics.lines().count(), 3, "{metrics}");
    assert!(out.join("checkpoint.bpk").exists());
    let model = gstmobilenetdetect::model::Model::load(&gstmobilenetdetect::model::ModelOptions {
        path: out.join("model.onnx"),
        providers: vec![gstmobilenetdetect::model::Provider::Cpu],
        ..Default::default()
    })
    .unwrap();
    assert_eq!(model.labels.name(1), Some("red"));
    assert_eq!(model.input.size, Some((96, 96)));

    let (code, log) = train(&data, &out, &["--epochs", "3", "--resume"]);
    assert_eq!(code, 0, "{log}");
    assert!(log.contains("resuming after epoch 2"), "{log}");
    assert_eq!(
        std::fs::read_to_string(out.join("metrics.csv"))
            .unwrap()
            .lines()
            .count(),
        4
    );

    // A broken sample: refused with the report, accepted with --skip-bad.
    let bad = data.join("Annotations/img-0000.xml");
    std::fs::write(
        &bad,
        std::fs::read_to_string(&bad)
            .unwrap()
            .replace("<name>red", "<name>green")
            .replace("<name>blue", "<name>green"),
    )
    .unwrap();
    let (code, log) = train(&data, &root.join("out2"), &["--epochs", "1"]);
    assert_eq!(code, 1, "{log}");
    assert!(
        log.contains("unknown label 'green'") && log.contains("--skip-bad"),
        "{log}"
    );
    let (code, log) = train(&data, &root.join("out2"), &["--epochs", "1", "--skip-bad"]);
    assert_eq!(code, 0, "{log}");
    std::fs::remove_dir_all(&root).unwrap();
}
