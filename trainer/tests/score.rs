//! `mobilenet-trainer score` on detectionjson logs.

use std::process::Command;

fn line(frame: u64, boxes: &[(&str, f64, [f64; 4])]) -> String {
    let d: Vec<String> = boxes
        .iter()
        .map(|(l, c, b)| {
            format!(
                "{{\"label\":\"{l}\",\"class_id\":1,\"confidence\":{c},\"x\":0,\"y\":0,\"width\":1,\"height\":1,\"box\":{{\"x_min\":{},\"y_min\":{},\"x_max\":{},\"y_max\":{}}}}}",
                b[0], b[1], b[2], b[3]
            )
        })
        .collect();
    format!(
        "{{\"frame\":{frame},\"timestamp\":0,\"width\":100,\"height\":100,\"detections\":[{}]}}\n",
        d.join(",")
    )
}

#[test]
fn scores_detections_against_ground_truth() {
    let dir = std::env::temp_dir().join(format!("trainer-score-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let truth = dir.join("truth.jsonl");
    let dets = dir.join("dets.jsonl");
    let a = [0.1, 0.1, 0.4, 0.4];
    let b = [0.5, 0.5, 0.9, 0.9];
    std::fs::write(
        &truth,
        line(0, &[("stop", 1.0, a)]) + &line(1, &[("stop", 1.0, a), ("yield", 1.0, b)]),
    )
    .unwrap();
    // Frame 0: hit; frame 1: stop missed (wrong place), yield hit.
    std::fs::write(
        &dets,
        line(0, &[("stop", 0.9, a)]) + &line(1, &[("stop", 0.8, b), ("yield", 0.7, b)]),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_mobilenet-trainer"))
        .args(["score", "--json", "--truth"])
        .arg(&truth)
        .arg("--detections")
        .arg(&dets)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    // stop: 1 of 2 found at precision 1 -> AP 0.5; yield: AP 1 -> mAP 0.75.
    assert!((v["map50"].as_f64().unwrap() - 0.75).abs() < 1e-4, "{v}");
    assert_eq!(v["classes"][0]["label"], "stop");
    let bad = dir.join("bad.jsonl");
    std::fs::write(&bad, "{\"frame\":0}\nnot json\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_mobilenet-trainer"))
        .args(["score", "--truth"])
        .arg(&bad)
        .arg("--detections")
        .arg(&dets)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("bad.jsonl:1"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn logs_with_track_ids_get_idf1_mota_and_id_switches() {
    let dir = std::env::temp_dir().join(format!("trainer-score-tracks-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let frame = |f: u64, boxes: &[(u64, f64)]| {
        let d: Vec<String> = boxes
            .iter()
            .map(|(id, x)| {
                format!(
                    "{{\"label\":\"stop\",\"track_id\":{id},\"class_id\":1,\"confidence\":0.9,\"x\":0,\"y\":0,\"width\":1,\"height\":1,\"box\":{{\"x_min\":{x},\"y_min\":0.1,\"x_max\":{},\"y_max\":0.3}}}}",
                    x + 0.2
                )
            })
            .collect();
        format!(
            "{{\"frame\":{f},\"timestamp\":0,\"width\":100,\"height\":100,\"detections\":[{}]}}\n",
            d.join(",")
        )
    };
    // Object 1 all along; the tracker calls it 5, then 6 after frame 4 (one switch).
    let (mut truth, mut tracks) = (String::new(), String::new());
    for f in 0..8u64 {
        let x = 0.05 * f as f64;
        truth += &frame(f, &[(1, x)]);
        tracks += &frame(f, &[(if f < 4 { 5 } else { 6 }, x)]);
    }
    let (t, d) = (dir.join("truth.jsonl"), dir.join("tracks.jsonl"));
    std::fs::write(&t, truth).unwrap();
    std::fs::write(&d, tracks).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_mobilenet-trainer"))
        .args(["score", "--json", "--truth"])
        .arg(&t)
        .arg("--detections")
        .arg(&d)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let tracking = &v["tracking"];
    assert_eq!(tracking["id_switches"], 1, "{v}");
    assert!((tracking["idf1"].as_f64().unwrap() - 0.5).abs() < 1e-4, "{v}");
    assert!((tracking["mota"].as_f64().unwrap() - 0.875).abs() < 1e-4, "{v}");
    // The plain table says it too.
    let out = Command::new(env!("CARGO_BIN_EXE_mobilenet-trainer"))
        .args(["score", "--truth"])
        .arg(&t)
        .arg("--detections")
        .arg(&d)
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("tracking: IDF1 0.5000"));
    std::fs::remove_dir_all(&dir).unwrap();
}
