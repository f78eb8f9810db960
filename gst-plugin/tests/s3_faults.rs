//! The S3 paths when the fleet misbehaves, against a real S3 server (moto on 127.0.0.1): two capture pipelines
//! of one device never share a spool, a spooled sample that cannot be read is reported lost instead of
//! blocking the rest, two elements watching one model each follow every version, and a server that accepts
//! connections but never answers neither drops live frames nor holds EOS or a state change.

mod common;
use common::*;
use detection_storage::{Bucket, Overrides};
use gst::prelude::*;
use mobilenetdetect_testkit::servers::{S3Server, StalledServer, free_port};
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

fn count(p: &gst::Pipeline, property: &str) -> u64 {
    p.by_name("cap").unwrap().property::<u64>(property)
}

fn samples(bucket: &Bucket, prefix: &str) -> BTreeSet<String> {
    bucket
        .list(prefix)
        .unwrap()
        .into_iter()
        .filter_map(|o| {
            let name = o
                .key
                .strip_prefix(&format!("{prefix}/Annotations/"))?
                .strip_suffix(".xml")?;
            Some(name.to_string())
        })
        .collect()
}

/// The test bucket at `endpoint` (moto accepts any credentials).
fn bucket_at(endpoint: &str) -> Bucket {
    let overrides = Overrides {
        endpoint: Some(endpoint.to_string()),
        access_key: Some("k".into()),
        secret_access_key: Some("s".into()),
        ..Default::default()
    };
    Bucket::open("fleet", &overrides).unwrap()
}

#[test]
fn two_capture_pipelines_of_one_device_never_share_a_spool() {
    init();
    let d = temp_dir("s3-two-captures");
    // Default spools and writer ids live under XDG_STATE_HOME: this test's own.
    // SAFETY: set before any pipeline thread starts.
    unsafe { std::env::set_var("XDG_STATE_HOME", d.join("state")) };
    let port = free_port();
    let endpoint = format!("http://127.0.0.1:{port}");
    let capture = |seed: u32| {
        pipeline(&format!(
            "detecttestsrc is-live=true seed={seed} num-buffers=127 num-objects=2 ! \
             video/x-raw,format=RGB,width=320,height=240,framerate=30/1 ! detectioncapture name=cap \
             location=s3://fleet/two source=ground-truth device-id=car endpoint-uri={endpoint} \
             access-key=k secret-access-key=s ! fakesink"
        ))
    };
    // Both start while the server is away; it comes back about 3 s into the runs.
    let (a, b) = (capture(1), capture(2));
    a.set_state(gst::State::Playing).unwrap();
    b.set_state(gst::State::Playing).unwrap();
    std::thread::sleep(Duration::from_secs(3));
    let Some(server) = S3Server::start_on(&d, port) else {
        return;
    };
    server.create_bucket("fleet");
    wait_eos(&a, 60);
    wait_eos(&b, 60);
    let counts: Vec<(u64, u64, u64, u64)> = [&a, &b]
        .iter()
        .map(|p| {
            (
                count(p, "captured"),
                count(p, "uploaded"),
                count(p, "spooled"),
                count(p, "lost"),
            )
        })
        .collect();
    a.set_state(gst::State::Null).unwrap();
    b.set_state(gst::State::Null).unwrap();
    let bucket = bucket_at(&endpoint);
    let stored = samples(&bucket, "two");
    let (car, car2): (Vec<_>, Vec<_>) = stored.iter().partition(|n| !n.starts_with("car-2-"));
    eprintln!(
        "two captures of device 'car', server back at 3 s: {counts:?} (captured, uploaded, spooled, lost); \
         bucket holds {} samples ({} car, {} car-2)",
        stored.len(),
        car.len(),
        car2.len()
    );
    assert_eq!(counts, [(127, 127, 0, 0), (127, 127, 0, 0)]);
    assert_eq!(
        (car.len(), car2.len()),
        (127, 127),
        "each writer's samples under its own name"
    );
    for label_list in ["two/labels/car.txt", "two/labels/car-2.txt"] {
        bucket.get(label_list).unwrap();
    }
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn a_spooled_sample_that_cannot_be_read_is_reported_lost_not_retried_forever() {
    init();
    let d = temp_dir("s3-unreadable");
    let Some(server) = S3Server::start(&d) else { return };
    server.create_bucket("fleet");
    let spool = d.join("spool");
    let capture = |frames: u32, endpoint: &str| {
        pipeline(&format!(
            "detecttestsrc seed=5 num-buffers={frames} num-objects=2 ! video/x-raw,format=RGB,width=160,height=120 ! \
             detectioncapture name=cap location=s3://fleet/unreadable source=ground-truth device-id=cam \
             spool={} endpoint-uri={endpoint} access-key=k secret-access-key=s ! fakesink",
            spool.display()
        ))
    };
    let dead = format!("http://127.0.0.1:{}", free_port());
    let p = capture(12, &dead);
    play_to_eos(&p);
    assert_eq!(count(&p, "spooled"), 12);
    p.set_state(gst::State::Null).unwrap();
    // One sample's image goes missing from the spool (a disk error, a cleanup script).
    let jpeg = std::fs::read_dir(&spool)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "jpg"))
        .unwrap();
    std::fs::remove_file(&jpeg).unwrap();
    let xml = jpeg.with_extension("xml");
    assert!(xml.exists());
    let p = capture(3, &server.endpoint());
    play_to_eos(&p);
    let (uploaded, spooled, lost) = (count(&p, "uploaded"), count(&p, "spooled"), count(&p, "lost"));
    p.set_state(gst::State::Null).unwrap();
    assert_eq!((uploaded, spooled, lost), (14, 0, 1));
    assert!(!xml.exists(), "the sample given up leaves the spool");
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn two_elements_watching_one_model_each_follow_every_version() {
    init();
    let d = temp_dir("s3-two-watchers");
    let Some(server) = S3Server::start(&d) else { return };
    server.create_bucket("fleet");
    server.export_env();
    // SAFETY: set before any pipeline thread starts; the model cache is shared by both elements, as on a device.
    unsafe { std::env::set_var("XDG_CACHE_HOME", d.join("cache")) };
    let bucket = Bucket::open("fleet", &Overrides::default()).unwrap();
    bucket.put("models/latest.onnx", labelled_model_bytes("v1", 1)).unwrap();
    // One device, one model, two elements on a tee: a fast watcher and a slow one.
    let (fast_ms, slow_ms) = (200, 1000);
    let p = pipeline(&format!(
        "detecttestsrc is-live=true ! video/x-raw,width=64,height=64,framerate=30/1 ! tee name=t \
         t. ! queue ! mobilenetdetect model=s3://fleet/models/latest.onnx watch-model=true watch-interval={fast_ms} ! \
         fakesink name=fast sync=false \
         t. ! queue ! mobilenetdetect model=s3://fleet/models/latest.onnx watch-model=true watch-interval={slow_ms} ! \
         fakesink name=slow sync=false"
    ));
    let seen: std::collections::HashMap<&str, std::sync::Arc<std::sync::Mutex<Vec<String>>>> =
        [("fast", Default::default()), ("slow", Default::default())].into();
    for (sink, labels) in &seen {
        let labels = labels.clone();
        on_buffers(&p, sink, move |buf| {
            if let Some(r) = rois(buf).first() {
                let mut l = labels.lock().unwrap();
                if l.last() != Some(&r.label) {
                    l.push(r.label.clone());
                }
            }
        });
    }
    p.set_state(gst::State::Playing).unwrap();
    // Each version stays published for 2.5 intervals of the slow watcher.
    std::thread::sleep(Duration::from_millis(slow_ms * 5 / 2));
    for version in ["v2", "v3"] {
        bucket
            .put("models/latest.onnx", labelled_model_bytes(version, 1))
            .unwrap();
        std::thread::sleep(Duration::from_millis(slow_ms * 5 / 2));
    }
    std::thread::sleep(Duration::from_millis(500));
    p.set_state(gst::State::Null).unwrap();
    for (sink, labels) in &seen {
        let labels = labels.lock().unwrap().clone();
        eprintln!("{sink} watcher ran: {labels:?}");
        assert_eq!(labels, ["v1", "v2", "v3"], "the {sink} watcher follows every version");
    }
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn a_server_that_never_answers_neither_drops_live_frames_nor_holds_eos_or_a_state_change() {
    init();
    let d = temp_dir("s3-stalled");
    let stalled = StalledServer::start();
    // A 6 s live capture (60 frames at 10 fps) into the stalled server, with the default 1 GiB spool.
    let p = pipeline(&format!(
        "detecttestsrc is-live=true num-buffers=60 num-objects=2 ! \
         video/x-raw,format=RGB,width=320,height=240,framerate=10/1 ! detectioncapture name=cap \
         location=s3://fleet/stalled source=ground-truth device-id=cam spool={} endpoint-uri={} \
         access-key=k secret-access-key=s ! fakesink",
        d.join("spool").display(),
        stalled.endpoint()
    ));
    let started = Instant::now();
    p.set_state(gst::State::Playing).unwrap();
    wait_eos(&p, 120);
    let eos = started.elapsed();
    let (captured, dropped, spooled) = (count(&p, "captured"), count(&p, "dropped"), count(&p, "spooled"));
    let stopping = Instant::now();
    p.set_state(gst::State::Null).unwrap();
    let to_null = stopping.elapsed();
    eprintln!(
        "stalled server: EOS after {:.1} s (stream 6 s), NULL in {:.2} s; captured {captured}, dropped {dropped}, \
         spooled {spooled}",
        eos.as_secs_f64(),
        to_null.as_secs_f64()
    );
    assert_eq!(
        (captured, dropped, spooled),
        (60, 0, 60),
        "every frame waits in the spool"
    );
    // EOS waits for the first upload to fail (its 10 s request limit), well inside the 30 s promise.
    assert!(eos < Duration::from_secs(30), "EOS after {eos:?}");
    assert!(to_null < Duration::from_secs(3), "NULL took {to_null:?}");

    // A model watcher polling the stalled server: the stream ends, NULL comes at once.
    let Some(server) = S3Server::start(&d) else { return };
    server.create_bucket("fleet");
    let cache = d.join("cache");
    // SAFETY: set before the pipelines below start; the model downloaded here is the offline copy below.
    unsafe { std::env::set_var("XDG_CACHE_HOME", &cache) };
    let bucket = bucket_at(&server.endpoint());
    bucket
        .put("models/latest.onnx", labelled_model_bytes("car", 1))
        .unwrap();
    let watching = |endpoint: &str| {
        pipeline(&format!(
            "detecttestsrc is-live=true num-buffers=30 ! video/x-raw,width=64,height=64,framerate=10/1 ! \
             mobilenetdetect model=s3://fleet/models/latest.onnx watch-model=true watch-interval=500 \
             endpoint-uri={endpoint} access-key=k secret-access-key=s ! fakesink"
        ))
    };
    let p = watching(&server.endpoint());
    play_to_eos(&p);
    p.set_state(gst::State::Null).unwrap();
    let p = watching(&stalled.endpoint());
    let started = Instant::now();
    p.set_state(gst::State::Playing).unwrap();
    wait_eos(&p, 60);
    let eos = started.elapsed();
    let stopping = Instant::now();
    p.set_state(gst::State::Null).unwrap();
    let to_null = stopping.elapsed();
    eprintln!(
        "watch-model on a stalled server: EOS after {:.1} s (a 10 s start-up check, then a 3 s stream), NULL in {:.2} s",
        eos.as_secs_f64(),
        to_null.as_secs_f64()
    );
    assert!(to_null < Duration::from_secs(2), "NULL took {to_null:?}");
    let _ = std::fs::remove_dir_all(&d);
}
