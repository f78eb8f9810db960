//! `detecttestsrc`: ground truth as ROI metas, seeded clips, every output format, live pacing, clear errors.

mod common;
use common::*;
use gst::prelude::*;

/// Runs `launch` (ending in a detectionjson writing to the returned file) to EOS and parses the JSON lines.
fn json_lines(name: &str, launch: &str) -> Vec<serde_json::Value> {
    let out = temp_dir(name).join("gt.jsonl");
    let p = pipeline(&format!(
        "{launch} ! detectionjson source=ground-truth location={} ! fakesink",
        out.display()
    ));
    play_to_eos(&p);
    p.set_state(gst::State::Null).unwrap();
    std::fs::read_to_string(out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn ground_truth_boxes_are_attached_and_inside_the_frame() {
    let lines = json_lines(
        "dts-gt",
        "detecttestsrc num-buffers=20 num-objects=4 seed=5 ! video/x-raw,width=320,height=240",
    );
    assert_eq!(lines.len(), 20);
    let known = ["stop", "yield", "speed-limit", "pedestrian", "parking"];
    for l in &lines {
        let d = l["detections"].as_array().unwrap();
        assert_eq!(d.len(), 4, "{l}");
        for b in d {
            let (x, y, w, h) = (
                b["x"].as_u64().unwrap(),
                b["y"].as_u64().unwrap(),
                b["width"].as_u64().unwrap(),
                b["height"].as_u64().unwrap(),
            );
            assert!(x + w <= 320 && y + h <= 240 && w >= 40, "{b}");
            let label = b["label"].as_str().unwrap();
            let id = b["class_id"].as_u64().unwrap() as usize;
            assert_eq!(known[id - 1], label);
        }
    }
    // Objects move.
    assert_ne!(lines[0]["detections"], lines[19]["detections"]);
}

#[test]
fn same_seed_same_clip_other_seed_other_clip() {
    let launch = |seed: u32| {
        format!("detecttestsrc num-buffers=5 seed={seed} classes=stop,yield ! video/x-raw,width=160,height=120")
    };
    let a = json_lines("dts-seed-a", &launch(1));
    let b = json_lines("dts-seed-b", &launch(1));
    let c = json_lines("dts-seed-c", &launch(2));
    assert_eq!(a, b);
    assert_ne!(a, c);
    for l in &a {
        for d in l["detections"].as_array().unwrap() {
            assert!(
                ["stop", "yield"].contains(&d["label"].as_str().unwrap()),
                "only the chosen classes: {d}"
            );
        }
    }
}

#[test]
fn every_output_format_negotiates() {
    for format in ["RGBx", "BGRx", "RGBA", "BGRA", "RGB", "BGR", "NV12", "I420"] {
        let lines = json_lines(
            &format!("dts-{format}"),
            &format!("detecttestsrc num-buffers=2 ! video/x-raw,format={format},width=97,height=61"),
        );
        assert_eq!(lines.len(), 2, "{format}");
        assert_eq!(lines[0]["width"], 97);
    }
}

#[test]
fn live_mode_paces_frames_by_the_clock() {
    let start = std::time::Instant::now();
    let lines = json_lines(
        "dts-live",
        "detecttestsrc is-live=true num-buffers=6 ! video/x-raw,width=64,height=64,framerate=20/1",
    );
    assert_eq!(lines.len(), 6);
    assert!(
        start.elapsed() >= std::time::Duration::from_millis(240),
        "6 frames at 20 fps take about 300 ms"
    );
}

#[test]
fn bad_settings_fail_the_state_change() {
    let p = pipeline("detecttestsrc classes=stop,giraffe ! fakesink");
    let e = start_error(&p).expect("must fail");
    assert!(e.contains("giraffe") && e.contains("speed-limit"), "{e}");
    let p = pipeline("detecttestsrc min-size=100 max-size=50 ! fakesink");
    assert!(start_error(&p).expect("must fail").contains("min-size"));
}
