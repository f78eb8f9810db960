//! The gate in front of a fleet (issue 22, item 1), against a real S3 server (moto) on 127.0.0.1: `compare`
//! scores two real ONNX models on one regression set, `publish --gate` refuses a worse model and one whose labels
//! are not the fleet's (latest.onnx and the versioned models stay as they were), lets an equal one through and
//! `--force` overrides; `pipelines/retrain --model PATH --gate` never swaps in a model that scores worse than the
//! running one.

use detection_common::voc::{Annotation, VocObject, write_annotation};
use detection_storage::{Bucket, Overrides};
use mobilenetdetect_testkit::models::{ImageInput, blob_detector_model, decoded_model};
use mobilenetdetect_testkit::servers::S3Server;
use mobilenetdetect_testkit::{output, trainer_binary};
use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    let manifest =
        std::env::var_os("CARGO_MANIFEST_DIR").map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from);
    manifest.parent().unwrap().to_path_buf()
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("mobilenetdetect-gate-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A regression set the blob detector is good at: `n` 320x240 images, each with one white disc on black whose
/// diameter (16 to 48 px) and position sit on the detector's window grid, labelled "ball".
fn write_balls(dir: &Path, n: usize) {
    for sub in ["Annotations", "JPEGImages"] {
        std::fs::create_dir_all(dir.join(sub)).unwrap();
    }
    std::fs::write(dir.join("labels.txt"), "ball\n").unwrap();
    for i in 0..n {
        let k = [16u32, 24, 32, 48][i % 4];
        let step = k / 4;
        let x0 = step * ((i as u32 * 7) % ((320 - k) / step));
        let y0 = step * ((i as u32 * 5 + 3) % ((240 - k) / step));
        let (cx, cy, r) = (x0 as f32 + k as f32 / 2.0, y0 as f32 + k as f32 / 2.0, k as f32 / 2.0);
        let img = image::RgbImage::from_fn(320, 240, |x, y| {
            let d = ((x as f32 + 0.5 - cx).powi(2) + (y as f32 + 0.5 - cy).powi(2)).sqrt();
            if d <= r {
                image::Rgb([240, 240, 240])
            } else {
                image::Rgb([10, 10, 10])
            }
        });
        let id = format!("ball-{i:03}");
        img.save(dir.join("JPEGImages").join(format!("{id}.jpg"))).unwrap();
        let a = Annotation {
            pts: None,
            reviewed: false,
            filename: format!("{id}.jpg"),
            width: 320,
            height: 240,
            objects: vec![VocObject {
                review: None,
                name: "ball".into(),
                xmin: x0 as f32,
                ymin: y0 as f32,
                xmax: (x0 + k) as f32,
                ymax: (y0 + k) as f32,
                difficult: false,
                confidence: None,
            }],
        };
        std::fs::write(dir.join("Annotations").join(format!("{id}.xml")), write_annotation(&a)).unwrap();
    }
}

/// A model with the blob detector's labels that always answers the same box: far worse on any regression set.
fn fixed_box_model() -> Vec<u8> {
    decoded_model(
        ImageInput::nchw(320, 240),
        &[[0.4, 0.4, 0.6, 0.6]],
        &[vec![0.9]],
        ("boxes", "scores"),
        &[
            ("mobilenetdetect.format", "ssd-decoded"),
            ("mobilenetdetect.labels", "BACKGROUND\nball\n"),
        ],
    )
}

/// The number after `key` in `text`.
fn figure(text: &str, key: &str) -> f64 {
    text.split_once(key)
        .and_then(|(_, rest)| rest.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no '{key}' in: {text}"))
}

#[test]
fn publish_refuses_a_worse_or_relabelled_model_and_lets_an_equal_one_through() {
    let d = tmp("publish");
    let Some(s3) = S3Server::start(&d) else { return };
    s3.create_bucket("fleet");
    let regression = d.join("regression");
    write_balls(&regression, 24);
    let models = [
        ("good.onnx", blob_detector_model(320, 240, "ball")),
        ("worse.onnx", fixed_box_model()),
        ("relabelled.onnx", blob_detector_model(320, 240, "person")),
    ];
    for (name, bytes) in &models {
        std::fs::write(d.join(name), bytes).unwrap();
    }
    let trainer = |args: &[&str]| {
        output(
            Command::new(trainer_binary())
                .args(args)
                .envs(s3.env())
                .env("XDG_CACHE_HOME", d.join("cache")),
        )
    };
    let model = |name: &str| d.join(name).display().to_string();
    let gate = regression.display().to_string();
    let publish = |name: &str, extra: &[&str]| {
        let m = model(name);
        let mut args = vec!["publish", "--model", &m, "--to", "s3://fleet/models", "--gate", &gate];
        args.extend_from_slice(extra);
        trainer(&args)
    };

    // compare: both scores, the deltas, and the verdict as the exit status.
    let (code, out) = trainer(&[
        "compare",
        "--baseline",
        &model("good.onnx"),
        "--candidate",
        &model("worse.onnx"),
        "--data",
        &gate,
        "--json",
    ]);
    assert_eq!(code, 1, "{out}");
    let line = out.lines().find(|l| l.starts_with('{')).expect("a JSON line");
    let v: serde_json::Value = serde_json::from_str(line).unwrap();
    let (good, worse) = (
        v["baseline"]["map50"].as_f64().unwrap(),
        v["candidate"]["map50"].as_f64().unwrap(),
    );
    // The blob detector finds discs on its own window grid (measured 1.0); one fixed box finds almost none.
    assert!(good >= 0.9 && worse <= 0.2, "{out}");
    assert_eq!(v["classes"][0]["label"], "ball");
    assert!(
        (v["classes"][0]["delta"].as_f64().unwrap() - (worse - good)).abs() < 1e-4,
        "{out}"
    );
    assert_eq!(v["passes"], false);
    // A model that lacks the data's class cannot be scored: the error names both label lists.
    let (code, out) = trainer(&[
        "compare",
        "--baseline",
        &model("good.onnx"),
        "--candidate",
        &model("relabelled.onnx"),
        "--data",
        &gate,
    ]);
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains("has the labels [person]") && out.contains("has [ball]"),
        "{out}"
    );

    let bucket = Bucket::open_url(
        &detection_storage::S3Url::parse("s3://fleet/models").unwrap(),
        &Overrides {
            endpoint: Some(s3.endpoint()),
            region: Some("us-east-1".into()),
            access_key: Some("fleet-test".into()),
            secret_access_key: Some("fleet-test-secret".into()),
            session_token: None,
        },
    )
    .unwrap();
    // (versioned models, which model latest.onnx is: an index into `models`, or None).
    let state = || {
        let versioned = bucket
            .list("models")
            .unwrap()
            .into_iter()
            .map(|o| o.key)
            .filter(|k| k.starts_with("models/model-"))
            .collect::<Vec<_>>();
        let latest = bucket
            .get("models/latest.onnx")
            .ok()
            .and_then(|(b, _)| models.iter().position(|(_, m)| *m == b));
        (versioned, latest)
    };

    // The first model of a prefix has nothing to be compared with.
    let (code, out) = publish("good.onnx", &[]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("does not exist yet: publishing the first model"), "{out}");
    let first = state();
    assert_eq!((first.0.len(), first.1), (1, Some(0)));

    // Worse: refused with both scores; nothing in the bucket changes.
    let (code, out) = publish("worse.onnx", &[]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("nothing published") && out.contains("mAP@0.5 falls from"),
        "{out}"
    );
    assert!((figure(&out, "\nmAP@0.5") - good).abs() < 1e-3, "{out}");
    assert_eq!(state(), first);

    // Other labels: refused naming both lists, before any scoring (even without a regression set).
    let m = model("relabelled.onnx");
    let (code, out) = trainer(&["publish", "--model", &m, "--to", "s3://fleet/models"]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("[person]") && out.contains("[ball]") && out.contains("latest.onnx"),
        "{out}"
    );
    assert_eq!(state(), first);

    // As good as the fleet's model: published.
    let (code, out) = publish("good.onnx", &[]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("verdict: the candidate passes"), "{out}");
    assert_eq!(state().0.len(), 2);

    // --force publishes a worse model, saying what it overrides.
    let (code, out) = publish("worse.onnx", &["--force"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("going ahead anyway (--force)"), "{out}");
    let forced = state();
    assert_eq!((forced.0.len(), forced.1), (3, Some(1)));
    let _ = std::fs::remove_dir_all(&d);
}

/// A training that comes out worse than the running model (1 epoch from scratch) is not swapped in.
#[test]
fn retrain_with_a_gate_keeps_the_running_model_when_the_new_one_is_worse() {
    let d = tmp("retrain");
    let data = d.join("captures");
    write_balls(&data, 24);
    let running = d.join("running.onnx");
    let before = blob_detector_model(320, 240, "ball");
    std::fs::write(&running, &before).unwrap();
    let (code, out) = output(Command::new(repo().join("pipelines/retrain")).args([
        "--data",
        data.to_str().unwrap(),
        "--model",
        running.to_str().unwrap(),
        "--gate",
        data.to_str().unwrap(),
        "--work",
        d.join("work").to_str().unwrap(),
        "--epochs",
        "1",
        "--input-size",
        "96",
        "--width",
        "0.35",
    ]));
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("verdict: the candidate is worse"), "{out}");
    assert!(out.contains("kept"), "{out}");
    assert!(d.join("work/model.onnx").is_file(), "{out}");
    assert_eq!(std::fs::read(&running).unwrap(), before);
    let _ = std::fs::remove_dir_all(&d);
}
