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
    common::output(&mut c)
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
    // Not a terminal: plain lines, no carriage-return progress, one summary line per epoch.
    assert!(!log.contains('\r'), "{log:?}");
    assert!(log.lines().all(|l| l.len() < 300), "{log}");
    assert_eq!(log.lines().filter(|l| l.starts_with("epoch 1/2 ")).count(), 1, "{log}");
    let metrics = std::fs::read_to_string(out.join("metrics.csv")).unwrap();
    assert_eq!(metrics.lines().count(), 3, "{metrics}");
    assert!(out.join("checkpoint.bpk").exists());
    let model = detection_inference::Model::load(&detection_inference::ModelOptions {
        path: out.join("model.onnx"),
        providers: vec![detection_inference::Provider::Cpu],
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
    // ... and an image cut short, which would decode grey at the bottom or fail mid-epoch.
    let jpeg = data.join("JPEGImages/img-0001.jpg");
    let bytes = std::fs::read(&jpeg).unwrap();
    std::fs::write(&jpeg, &bytes[..bytes.len() / 2]).unwrap();
    let (code, log) = train(&data, &root.join("out2"), &["--epochs", "1"]);
    assert_eq!(code, 1, "{log}");
    assert!(
        log.contains("unknown label 'green'") && log.contains("--skip-bad"),
        "{log}"
    );
    assert!(log.contains("img-0001.jpg: truncated JPEG"), "{log}");
    let (code, log) = train(&data, &root.join("out2"), &["--epochs", "1", "--skip-bad"]);
    assert_eq!(code, 0, "{log}");
    assert!(log.contains("skipping 2 bad samples"), "{log}");
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

#[test]
fn damaged_checkpoints_and_foreign_models_are_errors_naming_the_file() {
    let root = std::env::temp_dir().join(format!("trainer-damaged-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let (data, out) = (root.join("data"), root.join("out"));
    common::write_voc(&data, 24, 96);
    let (code, log) = train(&data, &out, &["--epochs", "1"]);
    assert_eq!(code, 0, "{log}");
    let good = std::fs::read(out.join("checkpoint.bpk")).unwrap();

    // Truncated, random bytes, and metadata a hand edit made absurd (input size 0, width 0, a huge epoch).
    let mut damaged = vec![
        ("truncated.bpk", good[..good.len() / 3].to_vec()),
        ("half-header.bpk", good[..40.min(good.len())].to_vec()),
        (
            "random.bpk",
            (0..4096u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect(),
        ),
        ("empty.bpk", Vec::new()),
    ];
    for (name, key, bad) in [
        ("size0.bpk", "mobilenetdetect.input_size", "0"),
        ("width0.bpk", "mobilenetdetect.width", "0"),
    ] {
        // Same-length edits keep the file's framing, so only the value is wrong.
        let at = good
            .windows(key.len())
            .position(|w| w == key.as_bytes())
            .expect("metadata key in the file")
            + key.len();
        let mut bytes = good.clone();
        let value_start = bytes[at..].iter().position(|b| b.is_ascii_digit()).unwrap() + at;
        let value_end = bytes[value_start..]
            .iter()
            .position(|b| !b.is_ascii_digit() && *b != b'.')
            .unwrap()
            + value_start;
        let replacement: Vec<u8> = std::iter::repeat_n(bad.as_bytes()[0], value_end - value_start).collect();
        bytes.splice(value_start..value_end, replacement);
        damaged.push((name, bytes));
    }
    for (name, bytes) in &damaged {
        let path = root.join(name);
        std::fs::write(&path, bytes).unwrap();
        let p = path.to_str().unwrap();
        for args in [
            vec!["eval", "--data", data.to_str().unwrap(), "--model", p],
            vec![
                "export",
                "--checkpoint",
                p,
                "--output",
                root.join("x.onnx").to_str().unwrap(),
            ],
        ] {
            let (code, log) = common::trainer(&args);
            assert!(code == 1 || code == 2, "{name} {args:?}: exit {code}: {log}");
            assert!(
                log.contains(name) && !log.contains("panicked"),
                "{name} {args:?}: {log}"
            );
        }
    }
    // A foreign ONNX model (not exported by the trainer) and a file that is no ONNX at all, as --init.
    let foreign = root.join("foreign.onnx");
    let mut g = detection_common::onnx::GraphBuilder::new("foreign");
    let dims = [
        detection_common::onnx::Dim::Fixed(1),
        detection_common::onnx::Dim::Fixed(3),
    ];
    let x = g.input("x", detection_common::onnx::data_type::FLOAT, &dims);
    g.node("Identity", &[&x], "y", vec![]);
    g.output("y", detection_common::onnx::data_type::FLOAT, &dims);
    std::fs::write(&foreign, g.to_bytes()).unwrap();
    let garbage = root.join("garbage.onnx");
    std::fs::write(&garbage, b"\x08\x07garbage").unwrap();
    for model in [&foreign, &garbage] {
        let (code, log) = train(
            &data,
            &root.join("out2"),
            &["--epochs", "1", "--init", model.to_str().unwrap()],
        );
        assert_ne!(code, 0, "{log}");
        assert!(
            log.contains(model.to_str().unwrap()) && !log.contains("panicked"),
            "{log}"
        );
    }
}

#[test]
fn resume_without_a_checkpoint_is_an_error_and_touches_nothing() {
    let root = std::env::temp_dir().join(format!("trainer-resume-none-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let (data, out) = (root.join("data"), root.join("out"));
    common::write_voc(&data, 16, 96);
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("metrics.csv"), "epoch,loss\n0,1.0\n").unwrap();
    let (code, log) = train(&data, &out, &["--epochs", "1", "--resume"]);
    assert_ne!(code, 0, "{log}");
    assert!(
        log.contains("checkpoint.bpk") && log.contains("nothing to resume"),
        "{log}"
    );
    assert_eq!(
        std::fs::read_to_string(out.join("metrics.csv")).unwrap(),
        "epoch,loss\n0,1.0\n"
    );
}

/// Backends this build lacks, and names that are no backend, are refused up front with what to do, before any
/// data is read (the data folder here does not exist).
#[cfg(not(any(feature = "tch", feature = "wgpu")))]
#[test]
fn devices_missing_from_the_build_are_refused_with_the_build_command() {
    let out = std::env::temp_dir().join(format!("trainer-devices-{}", std::process::id()));
    for (flag, name, expected) in [
        ("--device", "libtorch", "--features tch"),
        ("--cache-device", "libtorch", "--features tch"),
        ("--device", "wgpu", "--features wgpu"),
        ("--cache-device", "tpu", "expected cpu, wgpu or libtorch"),
    ] {
        let (code, log) = common::trainer(&[
            "train",
            "--data",
            "/nonexistent/captures",
            "--out",
            out.to_str().unwrap(),
            flag,
            name,
        ]);
        assert_eq!(code, 2, "{flag} {name}: {log}");
        assert!(log.contains(expected), "{flag} {name}: {log}");
        assert!(!log.contains("/nonexistent"), "the device is checked first: {log}");
    }
    assert!(!out.exists(), "nothing written");
}

/// `--seed` decides the whole run, the randomly initialised weights included: two runs with one seed log the
/// same loss (to float rounding across threads).
#[test]
fn the_same_seed_repeats_a_run() {
    let root = std::env::temp_dir().join(format!("trainer-seed-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let data = root.join("data");
    common::write_voc(&data, 24, 96);
    let loss = |out: &str| -> f64 {
        let out = root.join(out);
        let (code, log) = train(&data, &out, &["--epochs", "1", "--seed", "3"]);
        assert_eq!(code, 0, "{log}");
        let metrics = std::fs::read_to_string(out.join("metrics.csv")).unwrap();
        let row = metrics.lines().nth(1).expect("one epoch logged");
        row.split(',').nth(1).unwrap().parse().unwrap()
    };
    let (a, b) = (loss("a"), loss("b"));
    assert!((a - b).abs() <= 1e-4 * a.abs(), "same seed, losses {a} and {b}");
    let _ = std::fs::remove_dir_all(&root);
}
