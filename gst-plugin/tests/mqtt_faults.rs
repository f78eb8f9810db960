//! `detectionjson location=mqtt://…` when a line or the disk misbehaves, against a real Mosquitto on 127.0.0.1:
//! one oversized frame never blocks the lines behind it, an outbox at its file-size limit keeps publishing and
//! never sends a broken line, and pipelines with one device id (the default, the host name) never share a session
//! or an outbox.

mod common;
use common::*;
use gst::prelude::*;
use mobilenetdetect_testkit::servers::Broker;
use std::path::Path;
use std::time::{Duration, Instant};

/// A frame of `n` boxes with labels of `label_len` characters: about `n * (label_len + 200)` bytes of JSON.
const BIG_BOXES: usize = 1000;
const BIG_LABEL: usize = 1100;
const BIG_FRAME: u64 = 10;

/// Adds `BIG_BOXES` ground-truth boxes with long labels to frame `BIG_FRAME` passing `identity name=big`.
fn make_frame_big(p: &gst::Pipeline) {
    let pad = p.by_name("big").unwrap().static_pad("src").unwrap();
    let label = "L".repeat(BIG_LABEL);
    let frames = std::sync::atomic::AtomicU64::new(0);
    pad.add_probe(gst::PadProbeType::BUFFER, move |_, info| {
        let frame = frames.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        if frame == BIG_FRAME
            && let Some(buf) = info.buffer_mut()
        {
            let buf = buf.make_mut();
            for i in 0..BIG_BOXES as u32 {
                let mut meta = gst_video::VideoRegionOfInterestMeta::add(buf, &label, (i % 100, i / 10, 20, 20));
                meta.add_param(
                    gst::Structure::builder("ground-truth")
                        .field("label", label.as_str())
                        .field("class-id", 1u32)
                        .field("track-id", 1000 + i as u64)
                        .build(),
                );
            }
        }
        gst::PadProbeReturn::Ok
    });
}

fn json_pipeline(port: u16, topic: &str, outbox: &Path, frames: u32, extra: &str) -> gst::Pipeline {
    pipeline(&format!(
        "detecttestsrc num-buffers={frames} num-objects=0 ! video/x-raw,width=160,height=120 ! identity name=big ! \
         detectionjson name=json location=mqtt://127.0.0.1:{port}/{topic} device-id=big-test outbox={} \
         source=ground-truth {extra} ! fakesink",
        outbox.display()
    ))
}

/// Frame number -> detections received, parts merged (a repeated part counted once).
fn detections_per_frame(messages: &Messages) -> std::collections::BTreeMap<u64, usize> {
    let mut frames = std::collections::BTreeMap::new();
    let mut parts = std::collections::HashSet::new();
    for v in messages.lock().unwrap().iter() {
        let frame = v["frame"]
            .as_u64()
            .unwrap_or_else(|| panic!("not a frame line: {v:.200}"));
        let part = v["part"].as_u64().unwrap_or(0);
        if parts.insert((frame, part)) {
            *frames.entry(frame).or_insert(0) += v["detections"].as_array().unwrap().len();
        }
    }
    frames
}

fn every_frame_arrives(messages: &Messages, frames: u64) {
    wait_for_messages(messages, Duration::from_secs(30), |m| {
        let seen: std::collections::HashSet<u64> = m.iter().filter_map(|v| v["frame"].as_u64()).collect();
        seen.len() as u64 >= frames
    });
}

#[test]
fn one_oversized_line_never_blocks_the_lines_behind_it() {
    init();
    let d = temp_dir("mqtt-oversized");
    let Some(mut broker) = Broker::new(&d) else { return };
    broker.start();

    // The default limit is MQTT's own (what Mosquitto takes): a 1.3 MB frame goes out whole, in order.
    let got = subscribe_json(broker.port, "big/whole", "sub-whole");
    std::thread::sleep(Duration::from_millis(300));
    let p = json_pipeline(broker.port, "big/whole", &d.join("outbox-whole"), 31, "");
    make_frame_big(&p);
    play_to_eos(&p);
    let json = p.by_name("json").unwrap();
    assert_eq!((json.property::<u64>("lost"), json.property::<u64>("split")), (0, 0));
    p.set_state(gst::State::Null).unwrap();
    every_frame_arrives(&got, 31);
    let frames = detections_per_frame(&got);
    assert_eq!(frames.len(), 31, "every frame arrives: {:?}", frames.keys());
    assert_eq!(frames[&BIG_FRAME], BIG_BOXES);
    let biggest = got.lock().unwrap().iter().map(|v| v.to_string().len()).max().unwrap();
    assert!(biggest > 1_200_000, "the big frame is one message of {biggest} bytes");
    eprintln!("one message of {biggest} bytes among 31 frames: all 31 arrived");

    // A broker limit the user knows: max-message-size splits the frame into complete JSON parts.
    let got = subscribe_json(broker.port, "big/split", "sub-split");
    std::thread::sleep(Duration::from_millis(300));
    let p = json_pipeline(
        broker.port,
        "big/split",
        &d.join("outbox-split"),
        31,
        "max-message-size=65536",
    );
    make_frame_big(&p);
    play_to_eos(&p);
    let json = p.by_name("json").unwrap();
    assert_eq!((json.property::<u64>("lost"), json.property::<u64>("split")), (0, 1));
    p.set_state(gst::State::Null).unwrap();
    every_frame_arrives(&got, 31);
    let frames = detections_per_frame(&got);
    assert_eq!(frames.len(), 31);
    assert_eq!(frames[&BIG_FRAME], BIG_BOXES, "the parts hold every detection");
    let parts = got.lock().unwrap().iter().filter(|v| v["frame"] == BIG_FRAME).count();
    assert!(parts >= 20, "{parts} parts");
    for v in got.lock().unwrap().iter() {
        assert!(v.to_string().len() <= 65536, "a message above the limit");
    }

    // An outbox an earlier run (with a larger limit) left with a line above today's: skipped and counted,
    // the lines around it go out in order.
    let outbox = d.join("outbox-left");
    std::fs::create_dir_all(&outbox).unwrap();
    let huge = format!(
        "{{\"frame\":101,\"timestamp\":null,\"width\":1,\"height\":1,\"detections\":[{{\"label\":\"{}\"}}]}}\n",
        "x".repeat(200_000)
    );
    let small = |f: u32| format!("{{\"frame\":{f},\"timestamp\":null,\"width\":1,\"height\":1,\"detections\":[]}}\n");
    std::fs::write(
        outbox.join("000000000000.jsonl"),
        format!("{}{huge}{}", small(100), small(102)),
    )
    .unwrap();
    let got = subscribe_json(broker.port, "big/left", "sub-left");
    std::thread::sleep(Duration::from_millis(300));
    let p = json_pipeline(broker.port, "big/left", &outbox, 3, "max-message-size=65536");
    play_to_eos(&p);
    p.set_state(gst::State::Null).unwrap();
    wait_for_messages(&got, Duration::from_secs(20), |m| m.len() >= 5);
    assert_eq!(frame_numbers(&got), [100, 102, 0, 1, 2]);
    assert_eq!(p.by_name("json").unwrap().property::<u64>("lost"), 1);
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn a_broker_that_closes_on_a_large_line_costs_that_line_only() {
    init();
    let d = temp_dir("mqtt-broker-limit");
    // Mosquitto disconnects a client whose packet is above its max_packet_size (MQTT 3.1.1 cannot tell the
    // client the limit); the element does not know it.
    let Some(mut broker) = Broker::with_config(&d, "max_packet_size 100000") else {
        return;
    };
    broker.start();
    let got = subscribe_json(broker.port, "big/limited", "sub-limited");
    std::thread::sleep(Duration::from_millis(300));
    let started = Instant::now();
    let p = json_pipeline(broker.port, "big/limited", &d.join("outbox"), 31, "");
    make_frame_big(&p);
    play_to_eos(&p);
    every_frame_arrives(&got, 30);
    let seconds = started.elapsed().as_secs_f64();
    let lost = p.by_name("json").unwrap().property::<u64>("lost");
    p.set_state(gst::State::Null).unwrap();
    let frames: std::collections::BTreeSet<u64> = frame_numbers(&got).into_iter().collect();
    let expected: std::collections::BTreeSet<u64> = (0..31).filter(|f| *f != BIG_FRAME).collect();
    assert_eq!(frames, expected, "every frame but the one the broker refuses");
    assert_eq!(lost, 1);
    assert!(
        broker.log().contains("disconnected") || broker.log().contains("Client big-test"),
        "{}",
        broker.log()
    );
    eprintln!(
        "the broker closed on the 1.3 MB line: skipped after 3 connections, the other 30 arrived in {seconds:.1} s"
    );
    let _ = std::fs::remove_dir_all(&d);
}

/// `gst-launch-1.0` with a file-size limit (`ulimit -f`) of `limit` bytes on everything it writes.
fn launch_with_file_limit(launch: &str, limit: u64, state: &Path) -> std::process::Child {
    use std::os::unix::process::CommandExt;
    // The registry is written once without the limit, so the limited run never needs to write it.
    let mut warm = gst_launch("fakesrc num-buffers=1 ! fakesink");
    assert!(warm.status().unwrap().success());
    let mut c = gst_launch(launch);
    c.env("XDG_STATE_HOME", state);
    // SAFETY: setrlimit is async-signal-safe and touches only the child about to exec.
    unsafe {
        c.pre_exec(move || {
            let l = libc::rlimit {
                rlim_cur: limit,
                rlim_max: limit,
            };
            if libc::setrlimit(libc::RLIMIT_FSIZE, &l) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    c.spawn().unwrap()
}

#[test]
fn an_outbox_at_its_file_size_limit_keeps_publishing_and_never_sends_a_broken_line() {
    init();
    let d = temp_dir("mqtt-file-limit");
    let Some(mut broker) = Broker::new(&d) else { return };
    let outbox = d.join("outbox");
    // 150 frames at 30 fps with 4 objects (about 1 KB a line) into segments limited to 8 KB each, the broker
    // away for the first 2 s.
    const LIMIT: u64 = 8 * 1024;
    let port = broker.port;
    let launch = |frames: u32| {
        format!(
            "detecttestsrc is-live=true num-buffers={frames} num-objects=4 ! \
             video/x-raw,width=320,height=240,framerate=30/1 ! detectionjson \
             location=mqtt://127.0.0.1:{port}/cars/front device-id=front outbox={} source=ground-truth ! fakesink",
            outbox.display()
        )
    };
    // The subscriber's persistent session is in the broker before the outage, as a consumer's would be.
    broker.start();
    let got = subscribe_json(port, "cars/#", "sub-limit");
    std::thread::sleep(Duration::from_millis(500));
    broker.stop();
    let child = launch_with_file_limit(&launch(150), LIMIT, &d);
    std::thread::sleep(Duration::from_secs(2));
    broker.start();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let segments = outbox_segments(&outbox);
    for (_, path) in &segments {
        let text = std::fs::read(path).unwrap();
        assert!(text.len() as u64 <= LIMIT);
        assert!(
            text.is_empty() || text.ends_with(b"\n"),
            "{} ends with a cut line",
            path.display()
        );
    }
    let distinct = |m: &[serde_json::Value]| {
        m.iter()
            .filter_map(|v| v["frame"].as_u64())
            .collect::<std::collections::HashSet<_>>()
            .len()
    };
    wait_for_messages(&got, Duration::from_secs(20), |m| distinct(m) >= 150);
    let first_run = got.lock().unwrap().len();
    // The next run's lines are whole messages too (none glued to a cut line).
    let next = launch_with_file_limit(&launch(5), LIMIT, &d)
        .wait_with_output()
        .unwrap();
    assert!(next.status.success(), "{}", String::from_utf8_lossy(&next.stderr));
    wait_for_messages(&got, Duration::from_secs(20), |m| distinct(&m[first_run..]) >= 5);
    let frames = frame_numbers(&got);
    let first_seen = |frames: &[u64]| {
        let mut seen = std::collections::HashSet::new();
        frames.iter().copied().filter(|f| seen.insert(*f)).collect::<Vec<_>>()
    };
    assert_eq!(
        first_seen(&frames[..first_run]),
        (0..150).collect::<Vec<_>>(),
        "every frame, in order"
    );
    assert_eq!(
        first_seen(&frames[first_run..]),
        (0..5).collect::<Vec<_>>(),
        "the next run's, whole"
    );
    eprintln!(
        "file-size limit {LIMIT} bytes: {} segments written, {} messages for 155 frames",
        segments.len(),
        frames.len()
    );
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn pipelines_with_one_device_id_never_share_a_session_or_an_outbox() {
    init();
    let d = temp_dir("mqtt-two-pipelines");
    // Default outboxes and client ids live under XDG_STATE_HOME: this test's own.
    // SAFETY: set before any pipeline thread starts.
    unsafe { std::env::set_var("XDG_STATE_HOME", d.join("state")) };
    let Some(mut broker) = Broker::new(&d) else { return };
    broker.start();
    let got = subscribe_json(broker.port, "car/detections", "sub-two");
    std::thread::sleep(Duration::from_millis(300));
    // Front, rear and cabin camera of one car: the default device id (the host name), one topic, default
    // outboxes.
    let camera = |seed: u32| {
        pipeline(&format!(
            "detecttestsrc is-live=true seed={seed} num-buffers=150 ! video/x-raw,width=160,height=120,framerate=30/1 ! \
             detectionjson name=json location=mqtt://127.0.0.1:{}/car/detections source=ground-truth ! fakesink",
            broker.port
        ))
    };
    let cameras = [camera(1), camera(2), camera(3)];
    for p in &cameras {
        p.set_state(gst::State::Playing).unwrap();
    }
    let ids: Vec<String> = cameras
        .iter()
        .map(|p| {
            p.by_name("json")
                .unwrap()
                .property::<Option<String>>("client-id")
                .unwrap()
        })
        .collect();
    let host = cameras[0].by_name("json").unwrap().property::<String>("device-id");
    assert_eq!(ids, [host.clone(), format!("{host}-2"), format!("{host}-3")]);
    for p in &cameras {
        wait_eos(p, 30);
    }
    for p in &cameras {
        p.set_state(gst::State::Null).unwrap();
    }
    wait_for_messages(&got, Duration::from_secs(20), |m| m.len() >= 450);
    let messages = got.lock().unwrap().clone();
    for id in &ids {
        let frames: Vec<u64> = messages
            .iter()
            .filter(|v| v["device"] == id.as_str())
            .map(|v| v["frame"].as_u64().unwrap())
            .collect();
        assert_eq!(frames, (0..150).collect::<Vec<_>>(), "{id}: every frame once, in order");
    }
    assert_eq!(messages.len(), 450, "every line once");
    let log = broker.log();
    let connections = log.matches("New client connected").count();
    assert!(!log.contains("already connected"), "a session was taken over:\n{log}");
    // Three publishers and the subscriber, once each.
    assert_eq!(connections, 4, "{log}");
    eprintln!(
        "three pipelines with the default device id: client ids {ids:?}, {connections} connections, 3 x 150 lines once each, in order"
    );

    // One outbox named for both: the second is refused, naming the folder.
    let shared = d.join("shared-outbox");
    let with_outbox = |seed: u32| {
        pipeline(&format!(
            "detecttestsrc is-live=true seed={seed} ! video/x-raw,width=160,height=120 ! detectionjson \
             location=mqtt://127.0.0.1:{}/car/detections outbox={} ! fakesink",
            broker.port,
            shared.display()
        ))
    };
    let first = with_outbox(1);
    first.set_state(gst::State::Paused).unwrap();
    let e = start_error(&with_outbox(2)).expect("the second start fails");
    assert!(e.contains(&shared.display().to_string()) && e.contains("in use"), "{e}");
    first.set_state(gst::State::Null).unwrap();
    let _ = std::fs::remove_dir_all(&d);
}
