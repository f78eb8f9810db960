//! `detectioncapture location=s3://…` against a real S3 server (moto's server mode on 127.0.0.1): the VOC
//! layout in the bucket, device-unique names, and the on-disk spool through an outage (nothing lost, uploaded
//! by the next run) and at its size limit (dropped and counted).

mod common;
use common::*;
use detection_storage::{Bucket, Overrides};
use gst::prelude::*;
use mobilenetdetect_testkit::servers::{S3Server, free_port};
use std::collections::BTreeSet;
use std::path::Path;
use std::time::Instant;

fn capture(frames: u32, device: &str, spool: &Path, extra: &str) -> gst::Pipeline {
    pipeline(&format!(
        "detecttestsrc seed=3 num-buffers={frames} num-objects=2 ! video/x-raw,format=RGB,width=320,height=240 ! \
         detectioncapture name=cap location=s3://fleet/captures source=ground-truth device-id={device} \
         spool={} {extra} ! fakesink",
        spool.display()
    ))
}

fn count(p: &gst::Pipeline, property: &str) -> u64 {
    p.by_name("cap").unwrap().property::<u64>(property)
}

/// Relative keys under `captures/`.
fn keys(bucket: &Bucket) -> BTreeSet<String> {
    bucket
        .list("captures")
        .unwrap()
        .into_iter()
        .map(|o| o.key.trim_start_matches("captures/").to_string())
        .collect()
}

fn samples(keys: &BTreeSet<String>) -> BTreeSet<String> {
    keys.iter()
        .filter_map(|k| k.strip_prefix("Annotations/")?.strip_suffix(".xml").map(str::to_string))
        .collect()
}

#[test]
fn samples_reach_the_bucket_and_an_outage_waits_in_the_spool() {
    init();
    let d = temp_dir("s3-capture");
    let Some(server) = S3Server::start(&d) else { return };
    server.create_bucket("fleet");
    server.export_env();
    let bucket = Bucket::open("fleet", &Overrides::default()).unwrap();

    // Online: every sample lands with its JPEG, the device's labels, nothing left in the spool.
    let spool_a = d.join("spool-a");
    let started = Instant::now();
    let p = capture(40, "cam-a", &spool_a, "");
    play_to_eos(&p);
    let seconds = started.elapsed().as_secs_f64();
    assert_eq!(
        (count(&p, "captured"), count(&p, "uploaded"), count(&p, "spooled")),
        (40, 40, 0)
    );
    p.set_state(gst::State::Null).unwrap();
    let k = keys(&bucket);
    let a = samples(&k);
    assert_eq!(a.len(), 40, "{k:?}");
    for id in &a {
        assert!(id.starts_with("cam-a-"), "{id}");
        assert!(k.contains(&format!("JPEGImages/{id}.jpg")), "{id} has no JPEG");
    }
    let (labels, _) = bucket.get("captures/labels/cam-a.txt").unwrap();
    let labels = String::from_utf8(labels).unwrap();
    assert!(labels.lines().any(|l| l == "stop"), "{labels}");
    let bytes: u64 = bucket.list("captures").unwrap().iter().map(|o| o.size).sum();
    eprintln!(
        "uploaded 40 samples ({:.1} MB) in {seconds:.2} s: {:.0} samples/s, {:.2} MB/s (320x240 JPEG, moto on 127.0.0.1)",
        bytes as f64 / 1e6,
        40.0 / seconds,
        bytes as f64 / 1e6 / seconds
    );
    let spooled: Vec<_> = std::fs::read_dir(&spool_a)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".jpg"))
        .collect();
    assert!(spooled.is_empty(), "the spool still holds {spooled:?}");

    // Outage (nothing listens at the endpoint): samples wait in the spool, the run still ends normally.
    let spool_b = d.join("spool-b");
    let dead = format!("endpoint-uri=http://127.0.0.1:{}", free_port());
    let p = capture(12, "cam-b", &spool_b, &dead);
    play_to_eos(&p);
    assert_eq!(
        (count(&p, "captured"), count(&p, "uploaded"), count(&p, "spooled")),
        (12, 0, 12)
    );
    p.set_state(gst::State::Null).unwrap();
    assert!(samples(&keys(&bucket)).iter().all(|id| id.starts_with("cam-a-")));

    // Back online: the next run with that spool sends the backlog, then its own samples; names never repeat.
    let p = capture(5, "cam-b", &spool_b, "");
    play_to_eos(&p);
    assert_eq!(
        (count(&p, "captured"), count(&p, "uploaded"), count(&p, "spooled")),
        (5, 17, 0)
    );
    p.set_state(gst::State::Null).unwrap();
    let b: Vec<String> = samples(&keys(&bucket))
        .into_iter()
        .filter(|id| id.starts_with("cam-b-"))
        .collect();
    assert_eq!(b.len(), 17, "{b:?}");

    // A spool limit during an outage: samples beyond it are dropped and counted, never half-written.
    let spool_c = d.join("spool-c");
    let p = capture(30, "cam-c", &spool_c, &format!("{dead} spool-size=60000"));
    play_to_eos(&p);
    let (captured, dropped) = (count(&p, "captured"), count(&p, "dropped"));
    p.set_state(gst::State::Null).unwrap();
    assert!(
        captured > 0 && dropped > 0 && captured + dropped == 30,
        "{captured} + {dropped}"
    );
    let in_spool = std::fs::read_dir(&spool_c)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".xml"))
        .count();
    assert_eq!(in_spool as u64, captured);

    // The upload rate alone: a 640x480 backlog spooled offline, then sent by a run that captures nothing new.
    let spool_d = d.join("spool-d");
    let big = |frames: u32, extra: &str| {
        pipeline(&format!(
            "detecttestsrc seed=4 num-buffers={frames} num-objects=3 ! video/x-raw,format=RGB,width=640,height=480 ! \
             detectioncapture name=cap location=s3://fleet/rate source=ground-truth device-id=cam-d negative-rate=1 \
             spool={} {extra} ! fakesink",
            spool_d.display()
        ))
    };
    let p = big(100, &dead);
    play_to_eos(&p);
    assert_eq!(count(&p, "spooled"), 100);
    p.set_state(gst::State::Null).unwrap();
    let backlog: u64 = std::fs::read_dir(&spool_d)
        .unwrap()
        .flatten()
        .filter(|e| {
            e.file_name().to_string_lossy().ends_with(".jpg") || e.file_name().to_string_lossy().ends_with(".xml")
        })
        .map(|e| e.metadata().unwrap().len())
        .sum();
    let p = big(1, "every-n-frames=2");
    let started = Instant::now();
    play_to_eos(&p);
    let seconds = started.elapsed().as_secs_f64();
    assert_eq!((count(&p, "uploaded"), count(&p, "spooled")), (101, 0));
    p.set_state(gst::State::Null).unwrap();
    eprintln!(
        "backlog upload: 101 samples ({:.1} MB, 640x480 JPEG) in {seconds:.2} s: {:.0} samples/s, {:.1} MB/s \
         (moto on 127.0.0.1, one writer thread)",
        backlog as f64 / 1e6,
        101.0 / seconds,
        backlog as f64 / 1e6 / seconds
    );
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn a_bad_location_or_endpoint_fails_the_start_with_a_clear_message() {
    init();
    let d = temp_dir("s3-capture-bad");
    for (location, extra, expect) in [
        ("s3://No_Such", "", "bucket name"),
        ("s3://fleet/x", "endpoint-uri=127.0.0.1:9", "must start with http://"),
    ] {
        let p = pipeline(&format!(
            "videotestsrc num-buffers=1 ! detectioncapture location={location} spool={} {extra} ! fakesink",
            d.join("spool").display()
        ));
        let e = start_error(&p).expect("the start fails");
        assert!(e.contains(expect), "{e}");
    }
    let _ = std::fs::remove_dir_all(&d);
}
