//! Canary releases end to end, against real servers on 127.0.0.1 (moto's S3 server, Mosquitto) and eight
//! `gst-launch-1.0` devices running `mobilenetdetect model=s3://fleet/models/release.json`: a bad candidate (its
//! label list permuted, forced past publish's label check) reaches only the canary share, `rollout status --auto`
//! rolls it back from the canaries' verdicts, and they are on the stable model again within 2 watch intervals; a
//! good candidate is promoted the same way and reaches every device within 3 intervals; no device loses a frame.

mod common;
use common::*;
use detection_common::release::{Manifest, cohort};
use detection_storage::{Bucket, Overrides};
use mobilenetdetect_testkit::models::{ImageInput, decoded_model};
use mobilenetdetect_testkit::servers::{Broker, S3Server};
use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

const DEVICES: usize = 8;
const CANARY_PERCENT: u32 = 25;
const INTERVAL: Duration = Duration::from_millis(1000);
/// 30 frames/s live for 45 s: both rollouts took about 15 s on an idle 2-core machine, so a loaded one has
/// room three times over.
const FRAMES: u64 = 30 * 45;

fn device(i: usize) -> String {
    format!("cam-{i}")
}

/// A 64x64 model with two fixed boxes, class 1 and class 2, under `labels` (after BACKGROUND).
fn model(labels: [&str; 2]) -> Vec<u8> {
    let labels = format!("BACKGROUND\n{}\n{}\n", labels[0], labels[1]);
    decoded_model(
        ImageInput::nchw(64, 64),
        &[[0.1, 0.1, 0.4, 0.5], [0.5, 0.1, 0.9, 0.5]],
        &[vec![0.0, 0.9, 0.0], vec![0.0, 0.0, 0.9]],
        ("boxes", "scores"),
        &[(detection_common::metadata::KEY_LABELS, &labels)],
    )
}

fn launch(i: usize, broker: u16, s3: &S3Server, d: &Path) -> Child {
    let mut c = Command::new("gst-launch-1.0");
    c.arg("-q").args(
        format!(
            "detecttestsrc seed={i} is-live=true num-buffers={FRAMES} ! video/x-raw,width=160,height=120,framerate=30/1 ! \
             mobilenetdetect model=s3://fleet/models/release.json watch-model=true watch-interval={} \
             device-id={} verdicts=mqtt://127.0.0.1:{broker}/fleet/verdicts ! fakesink",
            INTERVAL.as_millis(),
            device(i)
        )
        .split_whitespace(),
    );
    with_this_plugin(&mut c);
    c.envs(s3.env()).env("XDG_CACHE_HOME", d.join("cache"));
    c.stderr(std::fs::File::create(d.join(format!("{}.log", device(i)))).unwrap());
    c.spawn().expect("gst-launch-1.0 starts")
}

fn trainer(args: &[&str], s3: &S3Server) -> String {
    let (code, text) = mobilenetdetect_testkit::output(
        Command::new(mobilenetdetect_testkit::trainer_binary())
            .args(args)
            .envs(s3.env()),
    );
    assert_eq!(code, 0, "mobilenet-trainer {args:?}:\n{text}");
    text
}

/// Every verdict received: (arrival, device, model, total frames).
type Seen = std::sync::Arc<std::sync::Mutex<Vec<(Instant, String, String, u64)>>>;

/// Subscribes to every device's verdicts, stamping each with its arrival.
fn subscribe_verdicts(port: u16) -> Seen {
    use rumqttc::{Client, Event, MqttOptions, Packet, QoS};
    let (client, mut connection) = Client::new(MqttOptions::new("canary-test", "127.0.0.1", port), 64);
    let seen: Seen = Default::default();
    let s = seen.clone();
    std::thread::spawn(move || {
        for event in connection.iter() {
            match event {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    let _ = client.try_subscribe("fleet/verdicts/+", QoS::AtLeastOnce);
                }
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    let v: serde_json::Value = serde_json::from_slice(&p.payload).unwrap();
                    s.lock().unwrap().push((
                        Instant::now(),
                        v["device"].as_str().unwrap().to_string(),
                        v["model"].as_str().unwrap().to_string(),
                        v["total_frames"].as_u64().unwrap(),
                    ));
                }
                Ok(_) => {}
                Err(_) => std::thread::sleep(Duration::from_millis(200)),
            }
        }
    });
    seen
}

/// Polls the verdicts until every device in `devices` has reported `model` at or after `since`; returns how
/// long after `since` the last of them did.
fn wait_until_running(seen: &Seen, devices: &[String], model: &str, since: Instant) -> Duration {
    let deadline = since + Duration::from_secs(20);
    loop {
        let seen = seen.lock().unwrap().clone();
        let firsts: Vec<Option<Instant>> = devices
            .iter()
            .map(|d| {
                seen.iter()
                    .find(|(at, dv, m, _)| *at >= since && dv == d && m == model)
                    .map(|s| s.0)
            })
            .collect();
        if firsts.iter().all(Option::is_some) {
            return firsts.into_iter().flatten().max().unwrap() - since;
        }
        assert!(
            Instant::now() < deadline,
            "{devices:?} not all on {model} after 20 s: {firsts:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn manifest(bucket: &Bucket) -> Manifest {
    let (bytes, _) = bucket.get("models/release.json").unwrap();
    Manifest::parse(&String::from_utf8_lossy(&bytes)).unwrap()
}

#[test]
fn a_bad_candidate_stays_on_the_canaries_until_rolled_back_and_a_good_one_reaches_every_device() {
    init();
    let d = temp_dir("canary");
    let Some(s3) = S3Server::start(&d) else { return };
    let Some(mut broker) = Broker::new(&d) else { return };
    s3.create_bucket("fleet");
    s3.export_env();
    broker.start();
    let bucket = Bucket::open("fleet", &Overrides::default()).unwrap();
    let models = "s3://fleet/models";
    // `rollout status --auto` until the canaries' verdicts decide (10 shadow frames: about 4 s at 1 in 10).
    let verdicts = format!("mqtt://127.0.0.1:{}/fleet/verdicts", broker.port);
    let decide = || {
        trainer(
            &[
                "rollout",
                "status",
                "--models",
                models,
                "--verdicts",
                &verdicts,
                "--auto",
                "--wait",
                "40",
                "--min-shadow-frames",
                "10",
            ],
            &s3,
        )
    };
    let write = |name: &str, bytes: Vec<u8>| {
        let p = d.join(name);
        std::fs::write(&p, bytes).unwrap();
        p.display().to_string()
    };
    let stable_file = write("stable.onnx", model(["ball", "car"]));
    let permuted_file = write("permuted.onnx", model(["car", "ball"]));
    let good_file = write("good.onnx", model(["ball", "car"]));

    trainer(&["publish", "--model", &stable_file, "--to", models], &s3);
    let stable = manifest(&bucket).stable;
    let names: Vec<String> = (0..DEVICES).map(device).collect();
    let (canaries, others): (Vec<String>, Vec<String>) =
        names.iter().cloned().partition(|d| cohort(d) < CANARY_PERCENT);
    assert!(!canaries.is_empty() && !others.is_empty(), "{canaries:?}");

    let seen = subscribe_verdicts(broker.port);
    std::thread::sleep(Duration::from_millis(300));
    let start = Instant::now();
    let mut children: Vec<Child> = (0..DEVICES).map(|i| launch(i, broker.port, &s3, &d)).collect();
    let streaming = wait_until_running(&seen, &names, &stable, start);
    eprintln!("8 devices on the stable model {stable} after {streaming:?}");

    // A bad candidate: forced past publish's label check.
    let out = trainer(
        &[
            "publish",
            "--model",
            &permuted_file,
            "--to",
            models,
            "--canary",
            &CANARY_PERCENT.to_string(),
            "--force",
        ],
        &s3,
    );
    assert!(out.contains("candidate"), "{out}");
    let bad = manifest(&bucket).candidate.unwrap();
    let published = Instant::now();
    let on_canaries = wait_until_running(&seen, &canaries, &bad, published);
    let status = decide();
    let rolled_back = Instant::now();
    assert!(
        status.contains("decision: roll back") && status.contains("agreement"),
        "{status}"
    );
    assert!(status.contains(&format!("rolled back {bad}")), "{status}");
    let m = manifest(&bucket);
    assert_eq!((m.candidate.as_deref(), m.stable.as_str()), (None, stable.as_str()));
    assert_eq!(m.rolled_back, std::slice::from_ref(&bad));
    let back = wait_until_running(&seen, &canaries, &stable, rolled_back);
    let leaked: Vec<String> = seen
        .lock()
        .unwrap()
        .iter()
        .filter(|(_, dv, m, _)| *m == bad && !canaries.contains(dv))
        .map(|s| s.1.clone())
        .collect();
    assert!(
        leaked.is_empty(),
        "the bad candidate reached non-canary devices {leaked:?}"
    );
    eprintln!(
        "bad candidate {bad}: on the canaries {canaries:?} {on_canaries:?} after publishing; decided in {:?}; \
         canaries back on {stable} {back:?} after the rollback (goal: within 2 intervals, {:?})",
        rolled_back - published,
        2 * INTERVAL
    );
    assert!(back <= 2 * INTERVAL, "canaries back on the stable model after {back:?}");

    // A good candidate: promoted, then on every device.
    trainer(
        &[
            "publish",
            "--model",
            &good_file,
            "--to",
            models,
            "--canary",
            &CANARY_PERCENT.to_string(),
        ],
        &s3,
    );
    let good = manifest(&bucket).candidate.unwrap();
    let published = Instant::now();
    let status = decide();
    let promoted = Instant::now();
    assert!(status.contains(&format!("promoted {good}")), "{status}");
    assert_eq!(manifest(&bucket).stable, good);
    let everywhere = wait_until_running(&seen, &names, &good, promoted);
    eprintln!(
        "good candidate {good}: decided in {:?}; on all {DEVICES} devices {everywhere:?} after the promotion \
         (goal: within 3 intervals, {:?})",
        promoted - published,
        3 * INTERVAL
    );
    assert!(everywhere <= 3 * INTERVAL, "promotion took {everywhere:?}");
    let (latest, _) = bucket.get("models/latest.onnx").unwrap();
    assert_eq!(
        latest,
        std::fs::read(&good_file).unwrap(),
        "latest.onnx follows the promotion"
    );

    // Every device ran to its end: every frame passed the element, across three or four swaps.
    for (i, c) in children.iter_mut().enumerate() {
        let status = c.wait().unwrap();
        let log = std::fs::read_to_string(d.join(format!("{}.log", device(i)))).unwrap_or_default();
        assert!(status.success(), "{} failed:\n{log}", device(i));
    }
    std::thread::sleep(Duration::from_millis(500));
    let seen = seen.lock().unwrap().clone();
    for name in &names {
        let last = seen.iter().rev().find(|(_, dv, _, _)| dv == name).unwrap();
        assert_eq!(last.3, FRAMES, "{name}: frames through the element");
    }
}
