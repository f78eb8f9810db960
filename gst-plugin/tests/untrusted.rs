//! Untrusted numbers and text reach `mobilenetdetect` from users and model files: class ids beyond the labels,
//! absurd input sizes, NaN and infinities in the outputs, labels with control characters, caps that change
//! mid-stream, invalid values set while playing, and applications that call back from a synchronous bus
//! handler. None of it panics, stalls, allocates absurdly or produces invalid output.

mod common;
use common::*;
use detection_common::metadata as meta;
use gst::prelude::*;
use gst_video::VideoFormat as F;
use mobilenetdetect_testkit::models::{self, ImageInput};
use std::time::Duration;

fn labelled_model(name: &str, boxes: &[[f32; 4]], scores: &[Vec<f32>], labels: &str) -> String {
    write_model(
        name,
        &models::decoded_model(
            ImageInput::nchw(32, 32),
            boxes,
            scores,
            ("boxes", "scores"),
            &[(meta::KEY_LABELS, labels)],
        ),
    )
}

fn sign_model(name: &str) -> String {
    labelled_model(
        name,
        &[[0.25, 0.25, 0.75, 0.75]],
        &[vec![0.0, 0.9]],
        "BACKGROUND\nsign\n",
    )
}

fn pushed_rois(e: &gst::Element, format: F, w: u32, h: u32) -> Vec<Roi> {
    let mut h_ = harness(e, &caps(format, w, h));
    h_.push(solid_frame(format, w, h, [90, 90, 90], 0)).unwrap();
    rois(&h_.pull().unwrap())
}

#[test]
fn class_ids_beyond_the_labels_are_refused_with_a_clear_error() {
    let model = sign_model("untrusted-classes");
    for (property, value) in [
        ("classes", "7"),
        ("classes", "4000000000"),
        ("classes", "18446744073709551615"),
        ("classes", "99999999999999999999999"),
        ("class-thresholds", "4000000000=0.5"),
    ] {
        let p = pipeline(&format!(
            "videotestsrc num-buffers=1 ! video/x-raw,width=32,height=32 ! mobilenetdetect model={model} {property}={value} ! fakesink"
        ));
        let e = start_error(&p).unwrap_or_else(|| panic!("{property}={value} must fail"));
        assert!(
            e.contains(property) && (e.contains("beyond") || e.contains("unknown class")),
            "{e}"
        );
    }
}

#[test]
fn absurd_model_input_sizes_are_refused_naming_the_file() {
    for (name, input, metadata) in [
        ("untrusted-huge", ImageInput::nchw(3_000_000_000, 300), None),
        ("untrusted-over-u32", ImageInput::nchw(1 << 33, 1 << 33), None),
        (
            "untrusted-meta-zero",
            ImageInput {
                size: None,
                nhwc: false,
                uint8: false,
            },
            Some("0x0"),
        ),
        (
            "untrusted-meta-huge",
            ImageInput {
                size: None,
                nhwc: false,
                uint8: false,
            },
            Some("100000x100000"),
        ),
    ] {
        let mut md = vec![(meta::KEY_LABELS, "BACKGROUND\nsign\n")];
        if let Some(size) = metadata {
            md.push((meta::KEY_INPUT_SIZE, size));
        }
        let model = write_model(
            name,
            &models::decoded_model(
                input,
                &[[0.1, 0.1, 0.5, 0.5]],
                &[vec![0.0, 0.9]],
                ("boxes", "scores"),
                &md,
            ),
        );
        let p = pipeline(&format!(
            "videotestsrc num-buffers=1 ! video/x-raw,width=32,height=32 ! mobilenetdetect model={model} ! fakesink"
        ));
        let e = start_error(&p).unwrap_or_else(|| panic!("{name} must fail"));
        assert!(
            e.contains("model.onnx") || e.contains(meta::KEY_INPUT_SIZE),
            "{name}: {e}"
        );
    }
}

#[test]
fn nan_and_infinite_outputs_never_become_metadata() {
    let nan = f32::NAN;
    let inf = f32::INFINITY;
    let model = labelled_model(
        "untrusted-nan",
        &[
            [nan, 0.1, 0.5, 0.5],   // NaN box, good score
            [0.1, 0.1, inf, 0.5],   // infinite box
            [0.2, 0.2, 0.6, 0.6],   // NaN score
            [0.3, 0.3, 0.7, 0.7],   // infinite score
            [-4.0, -4.0, 9.0, 9.0], // beyond the frame: clipped to it
            [0.5, 0.5, 0.5, 0.9],   // zero width
        ],
        &[
            vec![0.0, 0.9],
            vec![0.0, 0.9],
            vec![0.0, nan],
            vec![0.0, inf],
            vec![0.0, 0.8],
            vec![0.0, 0.9],
        ],
        "BACKGROUND\nsign\n",
    );
    let e = element(&[("model", &model), ("iou-threshold", &1.0f32)]);
    let found = pushed_rois(&e, F::Rgbx, 64, 48);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].rect, (0, 0, 64, 48));
    assert!((found[0].confidence - 0.8).abs() < 1e-6);

    // And what the JSON writer makes of it is valid JSON without inf or NaN.
    let dir = temp_dir("untrusted-nan-json");
    let json = dir.join("out.jsonl");
    let p = pipeline(&format!(
        "videotestsrc num-buffers=2 ! video/x-raw,width=64,height=48 ! mobilenetdetect model={model} ! \
         detectionjson location={} ! fakesink",
        json.display()
    ));
    p.set_state(gst::State::Playing).unwrap();
    let msg = p.bus().unwrap().timed_pop_filtered(
        gst::ClockTime::from_seconds(30),
        &[gst::MessageType::Eos, gst::MessageType::Error],
    );
    assert!(matches!(msg.unwrap().view(), gst::MessageView::Eos(_)));
    p.set_state(gst::State::Null).unwrap();
    for line in std::fs::read_to_string(&json).unwrap().lines() {
        assert!(!line.contains("inf") && !line.contains("NaN"), "{line}");
        serde_json::from_str::<serde_json::Value>(line).unwrap();
    }
}

#[test]
fn labels_with_control_characters_stay_on_one_line() {
    let model = labelled_model(
        "untrusted-labels",
        &[[0.25, 0.25, 0.75, 0.75]],
        &[vec![0.0, 0.9]],
        "BACKGROUND\nst\u{1}op\u{7}\tsign\n",
    );
    let e = element(&[("model", &model)]);
    let found = pushed_rois(&e, F::Rgbx, 32, 32);
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].label, "st op  sign");
}

#[test]
fn a_caps_change_never_carries_boxes_of_the_old_frame_size() {
    let model = sign_model("untrusted-caps");
    let e = element(&[("model", &model), ("interval", &5u32)]);
    let mut h = harness(&e, &caps(F::Rgbx, 64, 64));
    for _ in 0..2 {
        h.push(solid_frame(F::Rgbx, 64, 64, [90, 90, 90], 0)).unwrap();
        assert_eq!(rois(&h.pull().unwrap())[0].rect, (16, 16, 32, 32));
    }
    // Mid-interval the source switches to a smaller size (and another format).
    h.set_src_caps(caps(F::Nv12, 32, 16));
    for _ in 0..6 {
        h.push(solid_frame(F::Nv12, 32, 16, [90, 90, 90], 0)).unwrap();
        let found = rois(&h.pull().unwrap());
        assert_eq!(found.len(), 1);
        assert_eq!(
            found[0].rect,
            (8, 4, 16, 8),
            "a box of the 64x64 frames on a 32x16 frame"
        );
    }
}

#[test]
fn an_invalid_value_set_while_playing_is_a_warning_and_the_old_value_stays() {
    let model = sign_model("untrusted-playing");
    let p = pipeline(&format!(
        "videotestsrc is-live=true num-buffers=40 ! video/x-raw,width=32,height=32,framerate=100/1 ! \
         mobilenetdetect name=d model={model} classes=sign ! fakesink"
    ));
    let d = p.by_name("d").unwrap();
    p.set_state(gst::State::Playing).unwrap();
    let bus = p.bus().unwrap();
    assert!(
        bus.timed_pop_filtered(gst::ClockTime::from_seconds(10), &[gst::MessageType::AsyncDone])
            .is_some()
    );
    d.set_property("classes", "no-such-class");
    d.set_property("input-mean", "1,2");
    assert_eq!(d.property::<String>("classes"), "sign");
    assert_eq!(d.property::<Option<String>>("input-mean"), None);
    let mut warnings = 0;
    loop {
        let msg = bus
            .timed_pop_filtered(
                gst::ClockTime::from_seconds(30),
                &[
                    gst::MessageType::Eos,
                    gst::MessageType::Error,
                    gst::MessageType::Warning,
                ],
            )
            .expect("the stream goes on to EOS");
        match msg.view() {
            gst::MessageView::Warning(w) => {
                assert!(
                    w.error().to_string().contains("keeping the current value"),
                    "{}",
                    w.error()
                );
                warnings += 1;
            }
            gst::MessageView::Error(e) => panic!("{} {:?}", e.error(), e.debug()),
            _ => break,
        }
    }
    assert_eq!(warnings, 2);
    p.set_state(gst::State::Null).unwrap();
}

#[test]
fn setting_the_model_from_a_synchronous_bus_handler_does_not_deadlock() {
    let first = sign_model("untrusted-sync-a");
    let second = labelled_model(
        "untrusted-sync-b",
        &[[0.1, 0.1, 0.3, 0.3]],
        &[vec![0.0, 0.9]],
        "BACKGROUND\nother\n",
    );
    let p = pipeline(&format!(
        "videotestsrc num-buffers=60 ! video/x-raw,width=32,height=32 ! \
         mobilenetdetect name=d model={first} post-messages=true ! fakesink"
    ));
    let d = p.by_name("d").unwrap();
    let bus = p.bus().unwrap();
    let swaps = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
    let counter = swaps.clone();
    let weak = d.downgrade();
    // Runs on the streaming thread, inside the element's transform: it must not need a lock held there.
    bus.set_sync_handler(move |_, msg| {
        if let (gst::MessageView::Element(e), Some(d)) = (msg.view(), weak.upgrade())
            && e.structure().is_some_and(|s| s.name() == "mobilenetdetect")
        {
            let n = counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let next = if n.is_multiple_of(2) { &second } else { &first };
            d.set_property("model", next);
            d.set_property("classes", "");
            let _ = d.property::<Option<String>>("active-execution-provider");
        }
        gst::BusSyncReply::Pass
    });
    p.set_state(gst::State::Playing).unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let bus2 = bus.clone();
    std::thread::spawn(move || {
        let msg = bus2.timed_pop_filtered(
            gst::ClockTime::from_seconds(60),
            &[gst::MessageType::Eos, gst::MessageType::Error],
        );
        let _ = tx.send(msg.map(|m| matches!(m.view(), gst::MessageView::Eos(_))));
    });
    let reached_eos = rx
        .recv_timeout(Duration::from_secs(90))
        .expect("the pipeline deadlocked");
    assert_eq!(reached_eos, Some(true));
    assert_eq!(swaps.load(std::sync::atomic::Ordering::SeqCst), 60);
    bus.unset_sync_handler();
    p.set_state(gst::State::Null).unwrap();
}
