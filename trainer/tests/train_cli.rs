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
    ]);
    if !extra.contains(&"--init") {
        c.args(["--init", "scratch"]);
    }
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

    // Fine-tuning the exported model (what a pipeline runs) instead of starting over.
    let model_path = out.join("model.onnx");
    let (code, log) = train(
        &data,
        &root.join("finetuned"),
        &["--epochs", "1", "--init", model_path.to_str().unwrap()],
    );
    assert_eq!(code, 0, "{log}");
    assert!(log.contains("initialised from") && log.contains("model.onnx"), "{log}");

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

#[test]
fn kill_9_mid_epoch_loses_at_most_that_epoch() {
    let root = std::env::temp_dir().join(format!("trainer-kill-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let (data, out) = (root.join("data"), root.join("out"));
    common::write_voc(&data, 60, 96);
    let args = |c: &mut Command| {
        c.args(["train", "--data"]).arg(&data).arg("--out").arg(&out);
        c.args([
            "--input-size",
            "96",
            "--width",
            "0.35",
            "--batch-size",
            "4",
            "--init",
            "scratch",
        ]);
        c.args(["--epochs", "5"]);
    };
    let mut c = Command::new(env!("CARGO_BIN_EXE_mobilenet-trainer"));
    args(&mut c);
    let mut child = c
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let rows = |p: &Path| {
        std::fs::read_to_string(p.join("metrics.csv"))
            .map(|t| t.lines().skip(1).map(str::to_string).collect::<Vec<_>>())
            .unwrap_or_default()
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(300);
    while rows(&out).len() < 2 {
        assert!(std::time::Instant::now() < deadline, "two epochs took over 5 minutes");
        assert!(child.try_wait().unwrap().is_none(), "the trainer ended early");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    // SIGKILL: no chance to clean up, exactly like a crash or a power cut.
    child.kill().unwrap();
    child.wait().unwrap();
    let done_before = rows(&out).len();
    assert!(done_before < 5, "the run finished before it could be killed");

    let mut c = Command::new(env!("CARGO_BIN_EXE_mobilenet-trainer"));
    args(&mut c);
    let o = c.arg("--resume").output().unwrap();
    let log = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(o.status.success(), "{log}");
    assert!(log.contains(&format!("resuming after epoch {done_before}")), "{log}");
    let epochs: Vec<usize> = rows(&out)
        .iter()
        .map(|l| l.split(',').next().unwrap().parse().unwrap())
        .collect();
    assert_eq!(epochs, vec![0, 1, 2, 3, 4], "every epoch exactly once");
    // No temporary files are left behind, and the results load.
    for entry in std::fs::read_dir(&out).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        assert!(!name.contains(".tmp"), "left behind: {name}");
    }
    let o = Command::new(env!("CARGO_BIN_EXE_mobilenet-trainer"))
        .args(["eval", "--split", "all", "--json", "--data"])
        .arg(&data)
        .arg("--model")
        .arg(out.join("checkpoint.bpk"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    std::fs::remove_dir_all(&root).unwrap();
}
