//! `detectionjson`: one JSON object per frame to a file or UDP, detections or ground truth, EOS held until
//! everything is written, clear errors for unusable locations.

mod common;
use common::*;
use detection_common::metadata as meta;
use gst::prelude::*;
use mobilenetdetect_testkit::models::{self, ImageInput};

fn sign_model(name: &str) -> String {
    write_model(
        name,
        &models::decoded_model(
            ImageInput::nchw(64, 64),
            &[[0.25, 0.5, 0.75, 1.0]],
            &[vec![0.0, 0.875]],
            ("boxes", "scores"),
            &[(meta::KEY_LABELS, "BACKGROUND\nstop \"sign\"\n")],
        ),
    )
}

fn run(launch: &str) {
    let p = pipeline(launch);
    play_to_eos(&p);
    p.set_state(gst::State::Null).unwrap();
}

#[test]
fn writes_one_json_line_per_frame_to_a_file() {
    let model = sign_model("json-file");
    let out = temp_dir("json-file-out").join("log.jsonl");
    run(&format!(
        "videotestsrc num-buffers=4 ! video/x-raw,width=200,height=100,framerate=25/1 ! mobilenetdetect model={model} ! \
         detectionjson location={} ! fakesink",
        out.display()
    ));
    let text = std::fs::read_to_string(&out).unwrap();
    let lines: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 4, "{text}");
    assert_eq!(lines[1]["frame"], 1);
    assert_eq!(lines[1]["timestamp"], 40_000_000);
    assert_eq!(
        (lines[0]["width"].as_u64(), lines[0]["height"].as_u64()),
        (Some(200), Some(100))
    );
    let d = &lines[0]["detections"][0];
    assert_eq!(d["label"], "stop \"sign\"");
    assert_eq!(d["class_id"], 1);
    assert!((d["confidence"].as_f64().unwrap() - 0.875).abs() < 1e-6);
    assert_eq!(
        (
            d["x"].as_u64(),
            d["y"].as_u64(),
            d["width"].as_u64(),
            d["height"].as_u64()
        ),
        (Some(50), Some(50), Some(100), Some(50))
    );
    assert!((d["box"]["x_max"].as_f64().unwrap() - 0.75).abs() < 1e-6);
    assert_eq!(lines[0]["detections"].as_array().unwrap().len(), 1);
}

#[test]
fn sends_datagrams_over_udp() {
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    let port = socket.local_addr().unwrap().port();
    let model = sign_model("json-udp");
    run(&format!(
        "videotestsrc num-buffers=3 ! video/x-raw,width=64,height=64 ! mobilenetdetect model={model} ! \
         detectionjson location=udp://127.0.0.1:{port} ! fakesink"
    ));
    let mut buf = [0u8; 4096];
    for frame in 0..3 {
        let n = socket.recv(&mut buf).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&buf[..n]).unwrap();
        assert_eq!(v["frame"], frame);
        assert_eq!(v["detections"][0]["label"], "stop \"sign\"");
    }
}

#[test]
fn ground_truth_and_detections_are_told_apart() {
    init();
    let out = temp_dir("json-gt").join("gt.jsonl");
    let json = gst::ElementFactory::make("detectionjson")
        .property("location", out.display().to_string())
        .build()
        .unwrap();
    json.set_property_from_str("source", "ground-truth");
    let mut h = gst_check::Harness::with_element(&json, Some("sink"), Some("src"));
    h.set_src_caps(caps(gst_video::VideoFormat::Rgbx, 32, 32));
    let mut buf = gst::Buffer::with_size(32 * 32 * 4).unwrap();
    {
        let b = buf.get_mut().unwrap();
        let mut gt = gst_video::VideoRegionOfInterestMeta::add(b, "yield", (1, 2, 3, 4));
        gt.add_param(gst::Structure::builder("ground-truth").field("class-id", 2u32).build());
        let mut det = gst_video::VideoRegionOfInterestMeta::add(b, "stop", (5, 6, 7, 8));
        det.add_param(
            gst::Structure::builder("detection")
                .field("class-id", 1u32)
                .field("confidence", 0.5f64)
                .build(),
        );
    }
    h.push_and_pull(buf).unwrap();
    h.push_event(gst::event::Eos::new());
    let text = std::fs::read_to_string(&out).unwrap();
    let v: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    let d = v["detections"].as_array().unwrap();
    assert_eq!(d.len(), 1, "{text}");
    assert_eq!(
        (
            d[0]["label"].as_str(),
            d[0]["class_id"].as_u64(),
            d[0]["confidence"].as_f64()
        ),
        (Some("yield"), Some(2), Some(1.0))
    );
}

#[test]
fn unwritable_location_fails_the_state_change() {
    let p = pipeline("videotestsrc num-buffers=1 ! detectionjson location=/nonexistent-dir/log.jsonl ! fakesink");
    let e = start_error(&p).expect("must fail");
    assert!(e.contains("/nonexistent-dir/log.jsonl"), "{e}");
    let p = pipeline("videotestsrc num-buffers=1 ! detectionjson location=udp://no-such-host.invalid:9 ! fakesink");
    let e = start_error(&p).expect("must fail");
    assert!(e.contains("no-such-host.invalid"), "{e}");
}
