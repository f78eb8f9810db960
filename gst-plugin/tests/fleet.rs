//! The fleet end to end, against real servers on 127.0.0.1 (moto's S3 server, Mosquitto): four capture
//! pipelines with different device ids write to one bucket and one broker at once while the broker is
//! restarted and one pipeline is killed (kill -9) mid-run; then every completed sample is in the bucket exactly
//! once and whole, every JSON line produced before the kill arrives in order per device, the trainer trains
//! from the bucket (a second read downloads nothing) and publishes, and a pipeline watching `latest.onnx` swaps
//! to the new model without losing a frame.

mod common;
use common::*;
use detection_storage::{Bucket, Overrides};
use gst::prelude::*;
use mobilenetdetect_testkit::servers::{Broker, S3Server};
use rumqttc::{Client, Event, MqttOptions, Packet, QoS};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::{Child, Command};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const DEVICES: usize = 4;
const KILLED: usize = 3;
/// 30 frames/s live: four seconds per device; every other frame is captured (negative-rate=1 keeps frames
/// without boxes too), so a device that runs to the end captures exactly FRAMES / 2 samples.
const FRAMES: u32 = 120;

fn device(i: usize) -> String {
    format!("car-{i}")
}

fn launch(i: usize, frames: u32, d: &Path, broker: u16, s3: &S3Server) -> Child {
    let name = device(i);
    let mut c = gst_launch(&format!(
        "detecttestsrc seed={} num-objects=2 is-live=true num-buffers={frames} ! \
         video/x-raw,width=320,height=240,framerate=30/1 ! \
         detectioncapture location=s3://fleet/captures source=ground-truth negative-rate=1 every-n-frames=2 \
         device-id={name} spool={} ! \
         detectionjson source=ground-truth location=mqtt://127.0.0.1:{broker}/fleet/{name} device-id={name} \
         outbox={} ! fakesink",
        10 + i,
        d.join(format!("spool-{name}")).display(),
        d.join(format!("outbox-{name}")).display()
    ));
    c.envs(s3.env());
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(d.join(format!("{name}.log")))
        .unwrap();
    c.stderr(log);
    c.spawn().expect("gst-launch-1.0 starts")
}

/// (device, frame) of every message on fleet/#, in arrival order, from a persistent session.
fn subscribe(port: u16) -> Arc<Mutex<Vec<(String, u64)>>> {
    let mut options = MqttOptions::new("fleet-subscriber", "127.0.0.1", port);
    options
        .set_clean_session(false)
        .set_keep_alive(Duration::from_secs(5))
        .set_max_packet_size(1 << 20, 1 << 20);
    let (client, mut connection) = Client::new(options, 64);
    let got = Arc::new(Mutex::new(Vec::new()));
    let g = got.clone();
    std::thread::spawn(move || {
        for event in connection.iter() {
            match event {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    let _ = client.try_subscribe("fleet/#", QoS::AtLeastOnce);
                }
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    let v: serde_json::Value = serde_json::from_slice(&p.payload).expect("a JSON line");
                    let device = p.topic.trim_start_matches("fleet/").to_string();
                    g.lock().unwrap().push((device, v["frame"].as_u64().unwrap()));
                }
                Ok(_) => {}
                Err(_) => std::thread::sleep(Duration::from_millis(200)),
            }
        }
    });
    got
}

/// The frames a run had produced, from its outbox: a run numbers its frames from 0 and its outbox keeps its
/// lines (a segment is deleted only once acknowledged and past 1 MiB, far more than a run here writes), so the
/// last complete line tells how many there were.
fn produced_frames(dir: &Path) -> Vec<u64> {
    let last = outbox_lines(dir)
        .iter()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["frame"]
                .as_u64()
                .unwrap()
        })
        .max();
    last.map(|last| (0..=last).collect()).unwrap_or_default()
}

fn run_trainer(args: &[&str], s3: &S3Server, cache: &Path) -> String {
    let (code, text) = mobilenetdetect_testkit::output(
        Command::new(mobilenetdetect_testkit::trainer_binary())
            .args(args)
            .envs(s3.env())
            .env("XDG_CACHE_HOME", cache),
    );
    assert_eq!(code, 0, "mobilenet-trainer {args:?}:\n{text}");
    text
}

#[test]
fn four_devices_one_bucket_one_broker_then_train_publish_and_swap() {
    init();
    let d = temp_dir("fleet");
    let Some(s3) = S3Server::start(&d) else { return };
    let Some(mut broker) = Broker::new(&d) else { return };
    s3.create_bucket("fleet");
    s3.export_env();
    broker.start();
    let got = subscribe(broker.port);
    std::thread::sleep(Duration::from_millis(500));

    let started = Instant::now();
    let mut children: Vec<Child> = (0..DEVICES).map(|i| launch(i, FRAMES, &d, broker.port, &s3)).collect();
    // The outage starts once every device is streaming (a loaded machine can take seconds to start four
    // pipelines), and early enough that each still has most of its frames to go.
    let streaming = Instant::now() + Duration::from_secs(30);
    loop {
        let got = got.lock().unwrap().clone();
        if (0..DEVICES).all(|i| got.iter().filter(|(dv, _)| *dv == device(i)).count() >= 10) {
            break;
        }
        assert!(
            Instant::now() < streaming,
            "the devices did not start streaming: {got:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    broker.stop();
    std::thread::sleep(Duration::from_millis(700));
    // SAFETY: signalling our own child process.
    unsafe { libc::kill(children[KILLED].id() as i32, libc::SIGKILL) };
    children[KILLED].wait().unwrap();
    let produced_before_kill = produced_frames(&d.join(format!("outbox-{}", device(KILLED))));
    std::thread::sleep(Duration::from_millis(800));
    broker.start();
    for (i, c) in children.iter_mut().enumerate() {
        if i != KILLED {
            assert!(c.wait().unwrap().success(), "{} failed", device(i));
        }
    }
    let run_seconds = started.elapsed().as_secs_f64();
    assert!(!produced_before_kill.is_empty() && produced_before_kill.len() < FRAMES as usize);

    let bucket = Bucket::open("fleet", &Overrides::default()).unwrap();
    let samples_of = |name: &str| -> BTreeSet<String> {
        bucket
            .list("captures/Annotations")
            .unwrap()
            .into_iter()
            .filter_map(|o| {
                o.key
                    .strip_prefix("captures/Annotations/")?
                    .strip_suffix(".xml")
                    .map(str::to_string)
            })
            .filter(|id| id.starts_with(&format!("{name}-")))
            .collect()
    };
    let killed = device(KILLED);
    let spooled: BTreeSet<String> = std::fs::read_dir(d.join(format!("spool-{killed}")))
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_string_lossy().strip_suffix(".xml").map(str::to_string))
        .collect();
    let uploaded = samples_of(&killed);
    // A kill between a sample's upload and its spool cleanup leaves it in both: it is uploaded again under the
    // same keys, so it still counts once.
    let completed_before_kill: BTreeSet<String> = spooled.union(&uploaded).cloned().collect();
    let (uploaded_before_kill, spooled_after_kill) = (uploaded.len(), spooled.len());

    // The killed device comes back for one more frame pair: its spool and outbox go out first.
    let mut again = launch(KILLED, 2, &d, broker.port, &s3);
    assert!(again.wait().unwrap().success());

    // Samples: each device's complete samples exactly once, each with its whole JPEG.
    let objects: BTreeMap<String, u64> = bucket
        .list("captures")
        .unwrap()
        .into_iter()
        .map(|o| (o.key, o.size))
        .collect();
    for i in 0..DEVICES {
        let ids = samples_of(&device(i));
        let expected = if i == KILLED {
            assert!(ids.is_superset(&completed_before_kill), "{}: {ids:?}", device(i));
            completed_before_kill.len() + 1
        } else {
            FRAMES as usize / 2
        };
        assert_eq!(ids.len(), expected, "{}: {ids:?}", device(i));
        for id in &ids {
            let key = format!("captures/JPEGImages/{id}.jpg");
            assert!(objects.get(&key).is_some_and(|&s| s > 0), "{key} missing");
        }
    }
    for (key, _) in objects.iter().filter(|(k, _)| k.ends_with(".jpg")).take(40) {
        let (bytes, _) = bucket.get(key).unwrap();
        assert!(bytes.ends_with(&[0xFF, 0xD9]), "{key} is not a whole JPEG");
    }

    // JSON lines: per device, all in order; a QoS 1 resend after the broker restart may repeat a line, which
    // a consumer drops by (device, frame).
    let deadline = Instant::now() + Duration::from_secs(30);
    let expected_lines = |i: usize| {
        if i == KILLED {
            produced_before_kill.len() + 2
        } else {
            FRAMES as usize
        }
    };
    loop {
        let got = got.lock().unwrap().clone();
        let complete = (0..DEVICES).all(|i| {
            let first_run: BTreeSet<u64> = got.iter().filter(|(dv, _)| *dv == device(i)).map(|(_, f)| *f).collect();
            first_run.len()
                >= expected_lines(i).min(if i == KILLED {
                    produced_before_kill.len()
                } else {
                    FRAMES as usize
                })
        });
        if complete || Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_millis(1000));
    let got = got.lock().unwrap().clone();
    let mut duplicates = 0;
    for i in 0..DEVICES {
        let frames: Vec<u64> = got.iter().filter(|(dv, _)| *dv == device(i)).map(|(_, f)| *f).collect();
        let produced: Vec<u64> = if i == KILLED {
            produced_before_kill.clone()
        } else {
            (0..FRAMES as u64).collect()
        };
        // First arrivals of the run's lines, in arrival order, must be exactly what the device produced.
        let mut seen = BTreeSet::new();
        let mut firsts = Vec::new();
        let mut rest = Vec::new();
        for f in frames {
            if firsts.len() < produced.len() {
                if seen.insert(f) {
                    firsts.push(f);
                } else {
                    duplicates += 1;
                }
            } else {
                rest.push(f);
            }
        }
        assert_eq!(firsts, produced, "{}: lines lost or out of order", device(i));
        if i == KILLED {
            // After the restart: the new run's two lines (resends of old lines may precede them).
            assert!(rest.ends_with(&[0, 1]), "{}: the new run's lines: {rest:?}", device(i));
        }
    }
    eprintln!(
        "fleet run: {DEVICES} devices x {FRAMES} frames in {run_seconds:.1} s with a broker restart and a kill; \
         {} lines received, {duplicates} QoS-1 resends; killed device: {uploaded_before_kill} samples uploaded \
         and {spooled_after_kill} in its spool after the kill ({} distinct), {} lines produced",
        got.len(),
        completed_before_kill.len(),
        produced_before_kill.len()
    );

    // Training from the pool: the first read downloads, the second downloads nothing.
    let cache = d.join("cache");
    let first = run_trainer(&["check", "--data", "s3://fleet/captures"], &s3, &cache);
    let total_samples = FRAMES as usize / 2 * (DEVICES - 1) + completed_before_kill.len() + 1;
    assert!(
        first.contains(&format!("{} downloaded", 2 * total_samples + DEVICES)),
        "{first}"
    );
    if let Some(line) = first.lines().find(|l| l.contains(" downloaded (")) {
        eprintln!("trainer mirror, first read: {line}");
    }
    let out = d.join("train");
    let train = run_trainer(
        &[
            "train",
            "--data",
            "s3://fleet/captures",
            "--out",
            out.to_str().unwrap(),
            "--epochs",
            "1",
            "--input-size",
            "96",
            "--width",
            "0.35",
            "--init",
            "scratch",
        ],
        &s3,
        &cache,
    );
    assert!(train.contains(" 0 downloaded"), "{train}");

    // A pipeline runs the fleet's current model and watches latest.onnx.
    let models_env_cache = d.join("element-cache");
    // SAFETY: set before the in-process pipeline's threads start.
    unsafe {
        std::env::set_var("XDG_CACHE_HOME", &models_env_cache);
    }
    bucket
        .put(
            "models/latest.onnx",
            mobilenetdetect_testkit::models::blob_detector_model(320, 240, "ball"),
        )
        .unwrap();
    let p = pipeline(
        "detecttestsrc is-live=true ! video/x-raw,width=320,height=240,framerate=30/1 ! \
         mobilenetdetect model=s3://fleet/models/latest.onnx watch-model=true watch-interval=300 ! \
         fakesink name=sink sync=false",
    );
    let offsets = Arc::new(Mutex::new(Vec::new()));
    let o = offsets.clone();
    on_buffers(&p, "sink", move |buf| o.lock().unwrap().push(buf.offset()));
    p.set_state(gst::State::Playing).unwrap();
    std::thread::sleep(Duration::from_millis(800));
    let published = run_trainer(
        &[
            "publish",
            "--model",
            out.join("model.onnx").to_str().unwrap(),
            "--to",
            "s3://fleet/models",
            // The captures' classes are detecttestsrc's, not the running blob detector's "ball".
            "--force",
        ],
        &s3,
        &cache,
    );
    assert!(published.contains("s3://fleet/models/model-"), "{published}");
    assert!(published.contains("going ahead anyway (--force)"), "{published}");
    let versioned: Vec<_> = bucket
        .list("models")
        .unwrap()
        .into_iter()
        .filter(|o| o.key.starts_with("models/model-"))
        .collect();
    let latest = bucket.head("models/latest.onnx").unwrap().unwrap();
    assert_eq!((versioned.len(), versioned[0].size), (1, latest.size));
    let changed = p
        .bus()
        .unwrap()
        .iter_timed_filtered(gst::ClockTime::from_seconds(20), &[gst::MessageType::Element])
        .find(|m| {
            m.structure()
                .is_some_and(|s| s.name() == "mobilenetdetect-model-changed")
        });
    assert!(changed.is_some(), "the pipeline never swapped to the published model");
    std::thread::sleep(Duration::from_millis(300));
    p.set_state(gst::State::Null).unwrap();
    let offsets = offsets.lock().unwrap();
    assert!(offsets.len() > 20);
    for (i, offset) in offsets.iter().enumerate() {
        assert_eq!(*offset, i as u64, "no frame lost across the swap");
    }
    let _ = std::fs::remove_dir_all(&d);
}
