//! Interval, element messages, execution-provider fallback, model swap while playing, and every error case.

mod common;
use common::*;
use gst::prelude::*;
use gst_video::VideoFormat;
use mobilenetdetect_testkit::models::{self, ImageInput};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

fn probe_model(name: &str) -> String {
    write_model(
        name,
        &models::colour_probe_model(ImageInput::nchw(32, 32), [0.0, 0.0, 1.0, 1.0], &[]),
    )
}

fn labelled_model(name: &str, label: &str, boxes: usize) -> String {
    write_model(name, &labelled_model_bytes(label, boxes))
}

#[test]
fn interval_carries_the_latest_detections_without_blinking() {
    let e = element(&[
        ("model", &probe_model("interval")),
        ("score-threshold", &0.0f32),
        ("interval", &3u32),
    ]);
    let mut h = harness(&e, &caps(VideoFormat::Rgbx, 32, 32));
    let mut reds = Vec::new();
    for i in 0..7u8 {
        let out = h
            .push_and_pull(solid_frame(VideoFormat::Rgbx, 32, 32, [i * 30, 0, 0], 0))
            .unwrap();
        let r = rois(&out);
        assert_eq!(r.len(), 3, "frame {i} carries detections: {r:?}");
        reds.push((by_label(&r, "red").confidence * 255.0).round() as u32);
    }
    assert_eq!(
        reds,
        vec![0, 0, 0, 90, 90, 90, 180],
        "inferred on frames 0, 3 and 6 only"
    );
}

fn run_to_eos(p: &gst::Pipeline) -> Vec<gst::Message> {
    p.set_state(gst::State::Playing).unwrap();
    let bus = p.bus().unwrap();
    let mut msgs = Vec::new();
    for msg in bus.iter_timed(gst::ClockTime::from_seconds(30)) {
        match msg.view() {
            gst::MessageView::Eos(_) => break,
            gst::MessageView::Error(e) => panic!("error: {} {:?}", e.error(), e.debug()),
            _ => msgs.push(msg),
        }
    }
    p.set_state(gst::State::Null).unwrap();
    msgs
}

#[test]
fn post_messages_reports_each_inferred_frame() {
    let model = labelled_model("messages", "sign", 2);
    let p = pipeline(&format!(
        "videotestsrc num-buffers=6 ! video/x-raw,format=NV12,width=160,height=120,framerate=30/1 ! \
         mobilenetdetect model={model} interval=2 post-messages=true ! fakesink"
    ));
    let msgs = run_to_eos(&p);
    let dets: Vec<&gst::StructureRef> = msgs
        .iter()
        .filter_map(|m| m.structure())
        .filter(|s| s.name() == "mobilenetdetect")
        .collect();
    assert_eq!(dets.len(), 3, "6 frames, interval 2");
    let ts: Vec<u64> = dets.iter().map(|s| s.get::<u64>("timestamp").unwrap()).collect();
    assert_eq!(ts, vec![0, 66_666_666, 133_333_333]);
    assert_eq!(dets[0].get::<u32>("frame-width").unwrap(), 160);
    let list = dets[0].get::<gst::List>("detections").unwrap();
    assert_eq!(list.len(), 2);
    let d = list.as_slice()[0].get::<gst::Structure>().unwrap();
    assert_eq!(d.get::<String>("label").unwrap(), "sign");
    assert_eq!(d.get::<u32>("class-id").unwrap(), 1);
    assert!((d.get::<f64>("confidence").unwrap() - 0.9).abs() < 1e-6);
    assert_eq!((d.get::<u32>("x").unwrap(), d.get::<u32>("width").unwrap()), (16, 48));
    assert_eq!((d.get::<u32>("y").unwrap(), d.get::<u32>("height").unwrap()), (12, 48));
}

#[test]
fn unavailable_execution_provider_falls_back_with_a_warning() {
    let model = labelled_model("providers", "sign", 1);
    let p = pipeline(&format!(
        "videotestsrc num-buffers=2 ! video/x-raw,width=64,height=64 ! mobilenetdetect name=d model={model} \
         execution-provider=tensorrt,cuda,cpu ! fakesink"
    ));
    let msgs = run_to_eos(&p);
    let warnings: Vec<String> = msgs
        .iter()
        .filter_map(|m| match m.view() {
            gst::MessageView::Warning(w) => Some(w.error().to_string()),
            _ => None,
        })
        .collect();
    assert!(warnings.iter().any(|w| w.contains("tensorrt")), "{warnings:?}");
    assert!(warnings.iter().any(|w| w.contains("cuda")), "{warnings:?}");
    let d = p.by_name("d").unwrap();
    assert_eq!(
        d.property::<Option<String>>("active-execution-provider").as_deref(),
        Some("cpu")
    );
}

#[test]
fn model_swap_while_playing_loses_no_frame() {
    let a = labelled_model("swap-a", "car", 2);
    let b = labelled_model("swap-b", "sign", 1);
    let e = element(&[("model", &a)]);
    let mut h = harness(&e, &caps(VideoFormat::Nv12, 64, 64));
    let frame = || solid_frame(VideoFormat::Nv12, 64, 64, [0, 0, 0], 0);
    for _ in 0..3 {
        assert_eq!(rois(&h.push_and_pull(frame()).unwrap()).len(), 2);
    }
    e.set_property("model", &b);
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut pushed_after_swap = 0;
    loop {
        let out = h.push_and_pull(frame()).unwrap();
        pushed_after_swap += 1;
        let r = rois(&out);
        // Every frame runs entirely on one model or the other.
        match r.first().map(|d| d.label.as_str()) {
            Some("car") => assert_eq!(r.len(), 2),
            Some("sign") => {
                assert_eq!(r.len(), 1);
                break;
            }
            other => panic!("frame {pushed_after_swap} after the swap has {other:?}: {r:?}"),
        }
        assert!(Instant::now() < deadline, "the new model never arrived");
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(h.buffers_in_queue(), 0);
    for _ in 0..3 {
        assert_eq!(rois(&h.push_and_pull(frame()).unwrap())[0].label, "sign");
    }
}

#[test]
fn failed_swap_keeps_the_old_model_and_warns() {
    let model = labelled_model("swap-fail", "car", 1);
    let p = pipeline(&format!(
        "videotestsrc is-live=true ! video/x-raw,width=64,height=64,framerate=100/1 ! mobilenetdetect name=d model={model} ! \
         fakesink name=sink sync=false"
    ));
    let with_rois = Arc::new(AtomicUsize::new(0));
    let counter = with_rois.clone();
    p.by_name("sink")
        .unwrap()
        .static_pad("sink")
        .unwrap()
        .add_probe(gst::PadProbeType::BUFFER, move |_, info| {
            if let Some(buf) = info.buffer()
                && rois(buf).iter().any(|r| r.label == "car")
            {
                counter.fetch_add(1, Ordering::SeqCst);
            }
            gst::PadProbeReturn::Ok
        });
    p.set_state(gst::State::Playing).unwrap();
    let bus = p.bus().unwrap();
    bus.timed_pop_filtered(gst::ClockTime::from_seconds(10), &[gst::MessageType::AsyncDone])
        .expect("playing");
    let bad = temp_dir("swap-fail-bad").join("missing.onnx").display().to_string();
    p.by_name("d").unwrap().set_property("model", &bad);
    let msg = bus
        .timed_pop_filtered(
            gst::ClockTime::from_seconds(10),
            &[gst::MessageType::Warning, gst::MessageType::Error],
        )
        .expect("a warning about the failed load");
    match msg.view() {
        gst::MessageView::Warning(w) => assert!(w.error().to_string().contains(&bad), "{}", w.error()),
        other => panic!("expected a warning, got {other:?}"),
    }
    let before = with_rois.load(Ordering::SeqCst);
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        with_rois.load(Ordering::SeqCst) > before,
        "frames keep flowing with the old model's detections"
    );
    assert_eq!(p.current_state(), gst::State::Playing);
    p.set_state(gst::State::Null).unwrap();
}

fn error_for(props: &str) -> String {
    let p = pipeline(&format!(
        "videotestsrc num-buffers=1 ! video/x-raw,width=64,height=64 ! mobilenetdetect {props} ! fakesink"
    ));
    start_error(&p).unwrap_or_else(|| panic!("'{props}' should fail to start"))
}

#[test]
fn errors_name_the_file_and_the_fault_and_fail_the_state_change() {
    assert!(error_for("").contains("no model set"), "{}", error_for(""));

    let dir = temp_dir("errors");
    let missing = dir.join("missing.onnx").display().to_string();
    let e = error_for(&format!("model={missing}"));
    assert!(e.contains(&missing) && e.contains("cannot open"), "{e}");

    let text = dir.join("notes.onnx");
    std::fs::write(&text, "this is not a model").unwrap();
    let e = error_for(&format!("model={}", text.display()));
    assert!(
        e.contains(&text.display().to_string()) && e.contains("not an ONNX model"),
        "{e}"
    );

    let unusable = dir.join("classifier.onnx");
    std::fs::write(&unusable, models::unusable_model()).unwrap();
    let e = error_for(&format!("model={}", unusable.display()));
    assert!(
        e.contains("model-format") && e.contains("logits") && e.contains("input"),
        "lists inputs/outputs: {e}"
    );
    let e = error_for(&format!("model={} model-format=ssd-decoded", unusable.display()));
    assert!(e.contains("box output"), "{e}");

    let raw = dir.join("raw.onnx");
    std::fs::write(
        &raw,
        models::raw_model(ImageInput::nchw(32, 32), &[[0.0; 4]], &[vec![0.0, 1.0]], &[]),
    )
    .unwrap();
    let e = error_for(&format!("model={}", raw.display()));
    assert!(e.contains("anchors=FILE"), "{e}");
    let bad_anchors = dir.join("anchors.txt");
    std::fs::write(&bad_anchors, "0.5 0.5 0.1 0.1\n0.5 nope 0.1 0.1\n").unwrap();
    let e = error_for(&format!("model={} anchors={}", raw.display(), bad_anchors.display()));
    assert!(e.contains(&format!("{}:2", bad_anchors.display())), "{e}");

    let good = labelled_model("errors-good", "car", 1);
    let e = error_for(&format!("model={good} labels={}", dir.join("nolabels.txt").display()));
    assert!(e.contains("nolabels.txt"), "{e}");
    let e = error_for(&format!("model={good} classes=person"));
    assert!(
        e.contains("person") && e.contains("car"),
        "names the class and the known labels: {e}"
    );
    let e = error_for(&format!("model={good} class-thresholds=car"));
    assert!(e.contains("class=threshold"), "{e}");
    let e = error_for(&format!("model={good} input-mean=1,2"));
    assert!(e.contains("input-mean"), "{e}");
    let e = error_for(&format!("model={good} execution-provider=tpu"));
    assert!(e.contains("tpu"), "{e}");
}

#[test]
fn watch_model_reloads_a_replaced_file_without_losing_frames() {
    let dir = temp_dir("watch");
    let path = dir.join("current.onnx");
    std::fs::copy(labelled_model("watch-a", "car", 2), &path).unwrap();
    let p = pipeline(&format!(
        "detecttestsrc is-live=true ! video/x-raw,width=64,height=64,framerate=50/1 ! \
         mobilenetdetect model={} watch-model=true ! fakesink name=sink sync=false",
        path.display()
    ));
    let seen = Arc::new(std::sync::Mutex::new(Vec::<(u64, Vec<String>)>::new()));
    let s = seen.clone();
    on_buffers(&p, "sink", move |buf| {
        s.lock()
            .unwrap()
            .push((buf.offset(), rois(buf).into_iter().map(|r| r.label).collect()))
    });
    p.set_state(gst::State::Playing).unwrap();
    std::thread::sleep(Duration::from_millis(500));
    // Replace the file the way the trainer's export does: write elsewhere, then rename over it.
    let staged = dir.join(".current.onnx.tmp");
    std::fs::copy(labelled_model("watch-b", "sign", 1), &staged).unwrap();
    std::fs::rename(&staged, &path).unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    while !seen
        .lock()
        .unwrap()
        .iter()
        .any(|(_, l)| l.first().map(String::as_str) == Some("sign"))
    {
        assert!(Instant::now() < deadline, "the replaced model was never picked up");
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(200));
    p.set_state(gst::State::Null).unwrap();
    let seen = seen.lock().unwrap();
    assert_swapped_without_loss(&seen, &["car", "car"], &["sign"]);
}

#[test]
fn property_enums_are_registered_as_plugin_api() {
    init();
    for name in [
        "GstMobilenetDetectModelFormat",
        "GstMobilenetDetectBoxEncoding",
        "GstMobilenetDetectScoreActivation",
        "GstMobilenetDetectBoxOrder",
        "GstMobilenetDetectInputLayout",
        "GstMobilenetDetectChannelOrder",
        "GstMobilenetDetectResize",
        "GstMobilenetDetectBoxSource",
        "GstDetectionCaptureTrackPolicy",
    ] {
        let t = gst::glib::Type::from_name(name).unwrap_or_else(|| panic!("{name} is not registered"));
        assert!(t.plugin_api_flags().is_some(), "{t} is not marked as plugin API");
    }
}
