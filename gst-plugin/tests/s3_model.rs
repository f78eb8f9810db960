//! `mobilenetdetect model=s3://…/latest.onnx watch-model=true` against a real S3 server (moto on 127.0.0.1):
//! a newly published model is swapped in without losing a frame; a broken upload keeps the running model and
//! warns; a start while the bucket is unreachable runs the copy downloaded earlier.

mod common;
use common::*;
use detection_storage::{Bucket, Overrides};
use gst::prelude::*;
use mobilenetdetect_testkit::servers::{S3Server, free_port};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

type Seen = Arc<Mutex<Vec<(u64, Vec<String>)>>>;

fn running(launch: &str) -> (gst::Pipeline, Seen) {
    let p = pipeline(launch);
    let seen: Seen = Arc::default();
    let s = seen.clone();
    on_buffers(&p, "sink", move |buf| {
        s.lock()
            .unwrap()
            .push((buf.offset(), rois(buf).into_iter().map(|r| r.label).collect()))
    });
    (p, seen)
}

fn wait_for_label(seen: &Seen, label: &str, within: Duration) {
    let deadline = Instant::now() + within;
    while !seen
        .lock()
        .unwrap()
        .iter()
        .any(|(_, l)| l.first().map(String::as_str) == Some(label))
    {
        assert!(Instant::now() < deadline, "no frame with '{label}' within {within:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The texts of the warnings posted so far.
fn warnings(p: &gst::Pipeline) -> Vec<String> {
    let bus = p.bus().unwrap();
    std::iter::from_fn(|| bus.pop_filtered(&[gst::MessageType::Warning]))
        .filter_map(|m| match m.view() {
            gst::MessageView::Warning(w) => Some(w.error().to_string()),
            _ => None,
        })
        .collect()
}

#[test]
fn a_published_model_is_swapped_in_and_a_broken_one_is_refused() {
    init();
    let d = temp_dir("s3-model");
    let Some(server) = S3Server::start(&d) else { return };
    server.create_bucket("fleet");
    server.export_env();
    // SAFETY: set before any pipeline thread starts; the downloads cache goes to this test's folder.
    unsafe { std::env::set_var("XDG_CACHE_HOME", d.join("cache")) };
    let bucket = Bucket::open("fleet", &Overrides::default()).unwrap();
    bucket
        .put("models/latest.onnx", labelled_model_bytes("car", 2))
        .unwrap();

    let launch = "detecttestsrc is-live=true ! video/x-raw,width=64,height=64,framerate=50/1 ! \
                  mobilenetdetect model=s3://fleet/models/latest.onnx watch-model=true watch-interval=200 ! \
                  fakesink name=sink sync=false";
    let (p, seen) = running(launch);
    p.set_state(gst::State::Playing).unwrap();
    wait_for_label(&seen, "car", Duration::from_secs(10));

    // Publish: the object changes in one step (a PUT), the element downloads it in the background.
    bucket
        .put("models/latest.onnx", labelled_model_bytes("sign", 1))
        .unwrap();
    wait_for_label(&seen, "sign", Duration::from_secs(15));

    // A broken upload (cut short, not ONNX): the running model goes on, with a warning.
    let mut broken = labelled_model_bytes("truck", 1);
    broken.truncate(broken.len() / 2);
    bucket.put("models/latest.onnx", broken).unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut said = Vec::new();
    while !said.iter().any(|w: &String| w.contains("Keeping the current model")) {
        assert!(Instant::now() < deadline, "no warning about the broken model: {said:?}");
        std::thread::sleep(Duration::from_millis(100));
        said.extend(warnings(&p));
    }
    std::thread::sleep(Duration::from_millis(300));
    p.set_state(gst::State::Null).unwrap();
    let seen = seen.lock().unwrap();
    // After "sign", the broken upload never ran: every later frame is still "sign".
    assert_swapped_without_loss(&seen, &["car", "car"], &["sign"]);
    drop(seen);

    // The bucket unreachable at start: the copy downloaded earlier runs, with a warning saying so.
    let offline = launch.replace(
        "watch-interval=200",
        &format!("watch-interval=200 endpoint-uri=http://127.0.0.1:{}", free_port()),
    );
    let (p, seen) = running(&offline);
    if p.set_state(gst::State::Playing).is_err() {
        panic!("the offline start failed: {:?}", start_error(&p));
    }
    wait_for_label(&seen, "sign", Duration::from_secs(10));
    let said = warnings(&p);
    assert!(
        said.iter().any(|w| w.contains("running the copy downloaded earlier")),
        "{said:?}"
    );
    p.set_state(gst::State::Null).unwrap();

    // Nothing cached and nothing reachable: a clear error, no start.
    let e = start_error(&pipeline(&format!(
        "videotestsrc ! mobilenetdetect model=s3://fleet/models/other.onnx endpoint-uri=http://127.0.0.1:{} ! fakesink",
        free_port()
    )))
    .expect("the start fails");
    assert!(
        e.contains("s3://fleet/models/other.onnx") && e.contains("cannot download"),
        "{e}"
    );
    let _ = std::fs::remove_dir_all(&d);
}
