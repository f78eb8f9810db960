//! A stream whose frame size changes mid-way (a camera switching mode, a stream joining another): no box
//! computed on the old frames lands on the new ones, in `mode=live` with runs in flight too, and track ids are
//! never reused, so a consumer that keeps each object once (`detectioncapture track-policy=first`) sees the new
//! objects as new.

mod common;
use common::*;
use gst::prelude::*;
use std::sync::{Arc, Mutex, Once};

fn init_slow_model() {
    static SLOW: Once = Once::new();
    SLOW.call_once(|| {
        // Runs take 60 ms more: inferences are still in flight when the caps change.
        // SAFETY: set once, before GStreamer or any other thread of the test reads the environment.
        unsafe { std::env::set_var("MOBILENETDETECT_TEST_INFERENCE_DELAY_MS", "60") };
        init();
    });
}

const FRAME_NS: u64 = 33_333_333;

/// Pushes `frames` frames of `width` x `height` (RGBx, black) after setting those caps, each given by `make`.
fn push_frames(
    src: &gst_app::AppSrc,
    first: u64,
    frames: u64,
    (width, height): (u32, u32),
    make: impl Fn(u64, &mut gst::BufferRef),
) {
    src.set_caps(Some(&caps(gst_video::VideoFormat::Rgbx, width, height)));
    for f in first..first + frames {
        let mut buf = gst::Buffer::with_size((width * height * 4) as usize).unwrap();
        {
            let b = buf.get_mut().unwrap();
            b.set_pts(gst::ClockTime::from_nseconds(f * FRAME_NS));
            b.set_duration(gst::ClockTime::from_nseconds(FRAME_NS));
            make(f, b);
        }
        src.push_buffer(buf).unwrap();
        // About real time, so that runs overlap the switch.
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

/// A frame's number and the rectangles of its regions of interest.
type FrameRects = (u64, Vec<(u32, u32, u32, u32)>);
/// A frame's number and the track ids on it.
type FrameIds = (u64, Vec<u64>);

#[test]
fn live_mode_never_puts_a_box_of_the_old_frame_size_on_a_new_frame() {
    init_slow_model();
    // One object at (0.1, 0.1)-(0.4, 0.5) of whatever frame it sees.
    let model = write_model("caps-live", &labelled_model_bytes("car", 1));
    let p = pipeline(&format!(
        "appsrc name=src format=time ! mobilenetdetect model={model} mode=live inflight=2 ! fakesink name=sink sync=false"
    ));
    // (frame number, the boxes on it)
    let seen: Arc<Mutex<Vec<FrameRects>>> = Arc::default();
    let s = seen.clone();
    on_buffers(&p, "sink", move |buf| {
        let rects = rois(buf).into_iter().map(|r| r.rect).collect();
        s.lock()
            .unwrap()
            .push((buf.pts().unwrap().nseconds() / FRAME_NS, rects));
    });
    let src = p.by_name("src").unwrap().downcast::<gst_app::AppSrc>().unwrap();
    p.set_state(gst::State::Playing).unwrap();
    push_frames(&src, 0, 30, (640, 480), |_, _| {});
    push_frames(&src, 30, 30, (160, 120), |_, _| {});
    src.end_of_stream().unwrap();
    wait_eos(&p, 30);
    p.set_state(gst::State::Null).unwrap();
    let seen = seen.lock().unwrap();
    let (mut with_boxes, mut wrong) = (0, Vec::new());
    for (frame, rects) in seen.iter().filter(|(f, _)| *f >= 30) {
        for &(x, y, w, h) in rects {
            with_boxes += 1;
            // (16, 12, 48, 48) on a 160x120 frame, give or take a pixel of rounding.
            let close = |a: u32, b: u32| a.abs_diff(b) <= 1;
            if !(close(x, 16) && close(y, 12) && close(w, 48) && close(h, 48)) {
                wrong.push((frame, (x, y, w, h)));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "boxes of the 640x480 frames on 160x120 ones: {wrong:?}"
    );
    assert!(
        with_boxes >= 10,
        "the new size gets its own detections ({with_boxes} boxes)"
    );
}

/// A frame with one detection (20x20 at `x`, y=10), as `mobilenetdetect` attaches it.
fn detection_at(b: &mut gst::BufferRef, x: u32) {
    let mut meta = gst_video::VideoRegionOfInterestMeta::add(b, "stop", (x, 10, 20, 20));
    meta.add_param(
        gst::Structure::builder("detection")
            .field("label", "stop")
            .field("class-id", 1u32)
            .field("confidence", 0.9f64)
            .build(),
    );
}

#[test]
fn track_ids_are_never_reused_after_a_caps_change_or_a_stream_join() {
    init();
    let dir = temp_dir("caps-track-ids");
    let p = pipeline(&format!(
        "appsrc name=src format=time ! detectiontrack min-hits=1 ! detectioncapture location={} \
         track-policy=first ! fakesink name=sink sync=false",
        dir.display()
    ));
    let ids: Arc<Mutex<Vec<FrameIds>>> = Arc::default();
    let i = ids.clone();
    on_buffers(&p, "sink", move |buf| {
        let tracks = buf
            .iter_meta::<gst_video::VideoRegionOfInterestMeta>()
            .filter_map(|m| m.param("detection")?.get::<u64>("track-id").ok())
            .collect();
        i.lock()
            .unwrap()
            .push((buf.pts().unwrap().nseconds() / FRAME_NS, tracks));
    });
    let src = p.by_name("src").unwrap().downcast::<gst_app::AppSrc>().unwrap();
    p.set_state(gst::State::Playing).unwrap();
    // An object on the 640x480 stream, then another object on the 320x240 one that joins it.
    push_frames(&src, 0, 20, (640, 480), |f, b| detection_at(b, 100 + f as u32));
    push_frames(&src, 20, 20, (320, 240), |f, b| detection_at(b, 200 + f as u32));
    src.end_of_stream().unwrap();
    wait_eos(&p, 30);
    p.set_state(gst::State::Null).unwrap();
    let ids = ids.lock().unwrap();
    let before: std::collections::BTreeSet<u64> = ids
        .iter()
        .filter(|(f, _)| *f < 20)
        .flat_map(|(_, t)| t.clone())
        .collect();
    let after: std::collections::BTreeSet<u64> = ids
        .iter()
        .filter(|(f, _)| *f >= 20)
        .flat_map(|(_, t)| t.clone())
        .collect();
    assert_eq!(before.len(), 1, "{ids:?}");
    assert_eq!(after.len(), 1, "{ids:?}");
    assert!(
        before.is_disjoint(&after),
        "an id used again for another object: {before:?} then {after:?}"
    );
    let samples = detection_common::voc::Dataset::open(&dir).unwrap().samples.len();
    assert_eq!(samples, 2, "track-policy=first keeps both objects");
    let _ = std::fs::remove_dir_all(&dir);
}
