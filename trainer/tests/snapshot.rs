//! Dataset snapshots: `snapshot` records a dataset, `train --snapshot` trains on exactly those samples while new
//! captures arrive and fails naming what went missing or changed, the exported model carries the snapshot's id,
//! and `check` warns about rare classes.

mod common;
use std::path::Path;

fn train(data: &Path, out: &Path, snapshot: &Path) -> (i32, String) {
    common::trainer(&[
        "train",
        "--data",
        data.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--snapshot",
        snapshot.to_str().unwrap(),
        "--epochs",
        "1",
        "--input-size",
        "96",
        "--width",
        "0.35",
        "--init",
        "scratch",
    ])
}

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn a_training_pinned_to_a_snapshot_uses_exactly_its_samples_and_its_model_says_which() {
    let root = std::env::temp_dir().join(format!("trainer-snapshot-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let data = root.join("data");
    common::write_voc(&data, 30, 96);
    let pinned = root.join("S.json");
    let (code, log) = common::trainer(&[
        "snapshot",
        "--data",
        data.to_str().unwrap(),
        "--output",
        pinned.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{log}");
    let s = json(&pinned);
    assert_eq!(s["samples"].as_array().unwrap().len(), 30);
    assert_eq!(s["samples"][0]["name"], "img-0000");
    assert_eq!(s["labels"], serde_json::json!(["red", "blue"]));
    let id = s["id"].as_str().unwrap().to_string();

    // New captures arrive: the pinned training leaves them out.
    for sub in ["Annotations", "JPEGImages"] {
        let ext = if sub == "Annotations" { "xml" } else { "jpg" };
        std::fs::copy(
            data.join(sub).join(format!("img-0001.{ext}")),
            data.join(sub).join(format!("new-0001.{ext}")),
        )
        .unwrap();
    }
    let out = root.join("out");
    let (code, log) = train(&data, &out, &pinned);
    assert_eq!(code, 0, "{log}");
    assert!(log.contains(&format!("dataset snapshot {id}: 30 samples")), "{log}");
    assert_eq!(json(&out.join("snapshot.json"))["id"], id.as_str());
    // The model says which data it was trained on, and so does its checkpoint's export.
    let model = std::fs::read(out.join("model.onnx")).unwrap();
    assert!(model.windows(id.len()).any(|w| w == id.as_bytes()));
    let exported = root.join("exported.onnx");
    let (code, log) = common::trainer(&[
        "export",
        "--checkpoint",
        out.join("best.bpk").to_str().unwrap(),
        "--output",
        exported.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{log}");
    assert!(
        std::fs::read(&exported)
            .unwrap()
            .windows(id.len())
            .any(|w| w == id.as_bytes())
    );

    // A moved box and a vanished sample: refused, naming both.
    let xml = data.join("Annotations/img-0002.xml");
    let mut a = detection_common::voc::parse_annotation(&std::fs::read_to_string(&xml).unwrap(), &xml).unwrap();
    a.objects[0].xmin += 1.0;
    std::fs::write(&xml, detection_common::voc::write_annotation(&a)).unwrap();
    std::fs::remove_file(data.join("Annotations/img-0003.xml")).unwrap();
    let (code, log) = train(&data, &root.join("refused"), &pinned);
    assert_eq!(code, 1, "{log}");
    assert!(
        log.contains("missing 1 (img-0003)") && log.contains("changed 1 (img-0002"),
        "{log}"
    );
    assert!(log.contains("S.json"), "{log}");

    // A hand-edited snapshot does not pass for the data.
    let edited = std::fs::read_to_string(&pinned)
        .unwrap()
        .replacen("img-0005", "img-0006", 1);
    std::fs::write(&pinned, edited).unwrap();
    let (code, log) = train(&data, &root.join("edited"), &pinned);
    assert_eq!(code, 1, "{log}");
    assert!(log.contains("the file was edited"), "{log}");
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn check_reports_class_shares_and_warns_about_rare_classes() {
    let root = std::env::temp_dir().join(format!("trainer-balance-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    common::write_voc(&root, 20, 64);
    // Ten red and ten blue squares: 50 % each.
    let (code, out) = common::trainer(&["check", "--data", root.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("share") && out.contains("50.0%"), "{out}");
    assert!(!out.contains("warning:"), "{out}");
    let (code, out) = common::trainer(&["check", "--data", root.to_str().unwrap(), "--min-class-share", "0.6"]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(out.matches("warning: class").count(), 2, "{out}");
    let _ = std::fs::remove_dir_all(&root);
}
