//! `model=…/release.json`: the element runs what the fleet's release manifest assigns to its `device-id`
//! (the stable model, or the candidate on a canary device, with the stable model in shadow), from a local folder
//! or object storage. The manifest's format and the cohort rule are `detection_common::release`'s.

use super::remote;
use detection_common::release::Manifest;
use detection_inference::LoadError;
use detection_storage::{Cancel, Overrides};
use gst::glib;
use gst::prelude::*;
use std::path::PathBuf;

/// The canary-related properties: who this device is, and where its verdicts go.
#[derive(Debug, Clone, Default)]
pub(super) struct ReleaseProperties {
    /// Decides the canary cohort (default: the host name).
    pub(super) device_id: Option<String>,
    /// mqtt://HOST[:PORT]/TOPIC: a verdict goes to TOPIC/DEVICE-ID, retained, every watch interval.
    pub(super) verdicts: Option<String>,
}

impl ReleaseProperties {
    pub(super) fn specs() -> Vec<glib::ParamSpec> {
        vec![
            glib::ParamSpecString::builder("device-id")
                .nick("Device id")
                .blurb("Who this device is for a release manifest (model=…/release.json): a hash of it decides whether the device is in the canary share, the same devices every time (default: the host name)")
                .mutable_ready()
                .build(),
            glib::ParamSpecString::builder("verdicts")
                .nick("Verdicts")
                .blurb("mqtt://HOST[:PORT]/TOPIC: publish this device's verdict on the model it runs (frames, detections, p95 inference time, agreement with the stable model in shadow, failed runs) as a retained JSON message on TOPIC/DEVICE-ID every watch-interval and whenever the model changes, for 'mobilenet-trainer rollout status'")
                .mutable_ready()
                .build(),
        ]
    }

    /// Sets the property `name` if it is one of these; false otherwise.
    pub(super) fn set(&mut self, name: &str, value: &glib::Value) -> bool {
        let field = match name {
            "device-id" => &mut self.device_id,
            "verdicts" => &mut self.verdicts,
            _ => return false,
        };
        *field = value
            .get::<Option<String>>()
            .expect("type checked upstream")
            .filter(|s| !s.trim().is_empty());
        true
    }

    pub(super) fn get(&self, name: &str) -> Option<glib::Value> {
        match name {
            "device-id" => Some(self.device_id().to_value()),
            "verdicts" => Some(self.verdicts.to_value()),
            _ => None,
        }
    }

    pub(super) fn device_id(&self) -> String {
        self.device_id.clone().unwrap_or_else(crate::fleet::host_name)
    }
}

pub(super) fn is_manifest(model: &str) -> bool {
    model.trim_end().ends_with(".json")
}

/// What the `model` property resolved to.
pub(super) struct Resolved {
    /// The model file to run.
    pub(super) path: PathBuf,
    /// The local file of the object `model` names (the manifest's copy, for a manifest): what the watcher
    /// compares with the stored version.
    pub(super) source: PathBuf,
    /// The model's name in the manifest (else the `model` property).
    pub(super) name: String,
    pub(super) canary: bool,
    /// The stable model's file and how often it runs in shadow (a canary only).
    pub(super) shadow: Option<(PathBuf, u32)>,
    /// Downloaded objects and their local copies, recorded as current once the model loads.
    pub(super) downloaded: Vec<(String, PathBuf)>,
    /// What to warn about (an offline start running copies downloaded earlier).
    pub(super) warnings: Vec<String>,
}

/// The file `model` names, downloaded first when it is an s3:// object; a manifest is read and the model it
/// assigns to `device_id` (and the stable model, on a canary) fetched beside it.
pub(super) fn resolve(
    model: &str,
    device_id: &str,
    s3: &Overrides,
    at_start: bool,
    cancel: &Cancel,
) -> Result<Resolved, LoadError> {
    let is_remote = remote::is_remote(model);
    let mut downloaded = Vec::new();
    let mut warnings = Vec::new();
    let mut fetch = |location: &str| -> Result<PathBuf, LoadError> {
        if !is_remote {
            return Ok(PathBuf::from(location));
        }
        let (path, warning) = remote::fetch(location, s3, at_start, cancel)?;
        warnings.extend(warning);
        downloaded.push((location.to_string(), path.clone()));
        Ok(path)
    };
    let source = fetch(model)?;
    if !is_manifest(model) {
        return Ok(Resolved {
            path: source.clone(),
            source,
            name: model.to_string(),
            canary: false,
            shadow: None,
            downloaded,
            warnings,
        });
    }
    let text = std::fs::read_to_string(&source).map_err(|e| LoadError::Open(format!("cannot read {model}: {e}")))?;
    let manifest =
        Manifest::parse(&text).map_err(|e| LoadError::Settings(format!("{model}: not a release manifest: {e}")))?;
    let assigned = manifest.assignment(device_id);
    // Model names are relative to the manifest's folder (or prefix).
    let folder = model.rsplit_once('/').map(|(f, _)| f).unwrap_or(".");
    let beside = |name: &str| format!("{folder}/{name}");
    let path = fetch(&beside(assigned.model))?;
    let shadow = match assigned.shadow {
        Some((stable, every)) => Some((fetch(&beside(stable))?, every)),
        None => None,
    };
    Ok(Resolved {
        path,
        source,
        name: assigned.model.to_string(),
        canary: assigned.canary,
        shadow,
        downloaded,
        warnings,
    })
}

/// Records the downloaded copies that loaded, so an offline start runs them.
pub(super) fn mark_loaded(resolved: &Resolved) -> Result<(), LoadError> {
    for (location, path) in &resolved.downloaded {
        remote::loaded(location, path).map_err(LoadError::Open)?;
    }
    Ok(())
}
