//! Canary releases of a fleet's models: the release manifest beside them (`PREFIX/release.json`, format in
//! `detection_common::release`), moved by `publish --canary`, `rollout promote` and `rollout rollback`, and the
//! devices' verdicts read back from the MQTT broker they publish to.

use detection_common::release::{MANIFEST_NAME, Manifest, Verdict};
use detection_storage::{Bucket, ErrorKind, S3Url};
use rumqttc::{Client, Event, MqttOptions, Packet, QoS};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// The manifest at `to` (an s3:// prefix), if there is one.
pub fn read_manifest(bucket: &Bucket, to: &S3Url) -> Result<Option<Manifest>, String> {
    let key = to.child(MANIFEST_NAME);
    match bucket.get(&key) {
        Ok((bytes, _)) => {
            let text = String::from_utf8_lossy(&bytes);
            Manifest::parse(&text)
                .map(Some)
                .map_err(|e| format!("{}: {e}", bucket.url(&key)))
        }
        Err(e) if e.kind == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e.to_string()),
    }
}

pub fn write_manifest(bucket: &Bucket, to: &S3Url, manifest: &Manifest) -> Result<(), String> {
    bucket
        .put(&to.child(MANIFEST_NAME), manifest.to_json().into_bytes())
        .map_err(|e| e.to_string())
}

/// The manifest's candidate, checked against the one a decision was made about (`expected`): a candidate
/// published meanwhile was never judged.
fn take_candidate(manifest: &mut Manifest, expected: Option<&str>, doing: &str) -> Result<String, String> {
    let candidate = manifest
        .candidate
        .take()
        .ok_or(format!("the manifest has no candidate to {doing}"))?;
    match expected {
        Some(e) if e != candidate => Err(format!(
            "the candidate is now {candidate}, not {e} as judged: nothing done ({doing} by hand, or look again)"
        )),
        _ => Ok(candidate),
    }
}

fn open(models: &str) -> Result<(Bucket, S3Url, Manifest), String> {
    let to = S3Url::parse(models).map_err(|e| e.to_string())?;
    let bucket = Bucket::open_url(&to, &Default::default()).map_err(|e| e.to_string())?;
    let manifest = read_manifest(&bucket, &to)?.ok_or_else(|| {
        format!(
            "{} does not exist: publish a model first (mobilenet-trainer publish --to {models})",
            bucket.url(&to.child(MANIFEST_NAME))
        )
    })?;
    Ok((bucket, to, manifest))
}

pub fn status(models: &str) -> Result<Manifest, String> {
    open(models).map(|(_, _, m)| m)
}

/// The candidate becomes the stable model of every device; `latest.onnx` follows it (pipelines that watch
/// `latest.onnx` instead of the manifest get it too). With `expected`, only that candidate. Returns the
/// promoted model's name.
pub fn promote(models: &str, expected: Option<&str>) -> Result<String, String> {
    let (bucket, to, mut manifest) = open(models)?;
    let candidate = take_candidate(&mut manifest, expected, "promote")?;
    bucket
        .copy(&to.child(&candidate), &to.child("latest.onnx"))
        .map_err(|e| e.to_string())?;
    manifest.stable = candidate.clone();
    write_manifest(&bucket, &to, &manifest)?;
    Ok(candidate)
}

/// Every device goes back to the stable model; the candidate is recorded as rolled back. With `expected`,
/// only that candidate. Returns its name.
pub fn rollback(models: &str, expected: Option<&str>) -> Result<String, String> {
    let (bucket, to, mut manifest) = open(models)?;
    let candidate = take_candidate(&mut manifest, expected, "roll back")?;
    manifest.rolled_back.push(candidate.clone());
    write_manifest(&bucket, &to, &manifest)?;
    Ok(candidate)
}

/// The latest verdict of every device that published to `location` (mqtt://HOST[:PORT]/TOPIC; devices
/// publish retained messages on TOPIC/DEVICE-ID), collected for `listen` after subscribing.
pub fn read_verdicts(location: &str, listen: Duration) -> Result<Vec<Verdict>, String> {
    let bad = || format!("--verdicts {location}: expected mqtt://HOST[:PORT]/TOPIC");
    let rest = location.strip_prefix("mqtt://").ok_or_else(bad)?;
    let (authority, topic) = rest.split_once('/').filter(|(_, t)| !t.is_empty()).ok_or_else(bad)?;
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) => (h, p.parse::<u16>().map_err(|_| bad())?),
        None => (authority, 1883),
    };
    let mut options = MqttOptions::new(format!("mobilenet-trainer-rollout-{}", std::process::id()), host, port);
    options.set_keep_alive(Duration::from_secs(10));
    options.set_max_packet_size(1 << 20, 1 << 20);
    let (client, mut connection) = Client::new(options, 16);
    client
        .subscribe(format!("{topic}/+"), QoS::AtLeastOnce)
        .map_err(|e| e.to_string())?;
    let mut verdicts = BTreeMap::new();
    let mut until = Instant::now() + Duration::from_secs(10);
    let mut subscribed = false;
    while Instant::now() < until {
        // Never shorter than what is left: a timed-out poll abandons a connection handshake in progress.
        let left = until
            .saturating_duration_since(Instant::now())
            .max(Duration::from_millis(10));
        match connection.recv_timeout(left) {
            Ok(Ok(Event::Incoming(Packet::SubAck(_)))) if !subscribed => {
                subscribed = true;
                until = Instant::now() + listen;
            }
            Ok(Ok(Event::Incoming(Packet::Publish(p)))) => match Verdict::parse(&String::from_utf8_lossy(&p.payload)) {
                Ok(v) => {
                    verdicts.insert(v.device.clone(), v);
                }
                Err(e) => eprintln!("warning: ignoring a message on {}: {e}", p.topic),
            },
            Ok(Err(e)) => return Err(format!("cannot read verdicts from {host}:{port}: {e}")),
            _ => {}
        }
    }
    let _ = client.disconnect();
    if !subscribed {
        return Err(format!("the broker at {host}:{port} did not answer within 10 s"));
    }
    Ok(verdicts.into_values().collect())
}
