//! The release manifest and the canary verdicts: what `mobilenet-trainer publish`/`rollout`, the devices
//! (`mobilenetdetect model=…/release.json`) and `rollout status` agree on.
//!
//! `release.json` sits beside the fleet's models and names them relative to its own folder:
//! `{"stable": "model-A.onnx", "candidate": "model-B.onnx", "canary_percent": 10, "shadow_every": 10,
//! "rolled_back": []}`. A device is a canary when the FNV-1a hash of its device id, modulo 100, is below
//! `canary_percent`: the same devices every time, and raising the share only adds devices. A canary runs the
//! candidate and, on 1 frame in `shadow_every`, the stable model beside it; its verdict (one JSON object per
//! device, retained on `TOPIC/DEVICE`) says how far the two agree.

use crate::BBox;
use serde_json::{Value, json};

pub const MANIFEST_NAME: &str = "release.json";
pub const DEFAULT_SHADOW_EVERY: u32 = 10;

#[derive(Debug, Clone, PartialEq)]
pub struct Manifest {
    /// The model every device outside the canary cohort runs.
    pub stable: String,
    /// The model on trial, if any.
    pub candidate: Option<String>,
    /// Share of devices (0–100) that run the candidate.
    pub canary_percent: u32,
    /// A canary runs the stable model too on 1 frame in this many (0: never; no agreement is measured then).
    pub shadow_every: u32,
    /// Candidates rolled back, newest last: kept so a rollout's history stays beside the models.
    pub rolled_back: Vec<String>,
}

/// What one device runs under a manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assignment<'a> {
    pub model: &'a str,
    pub canary: bool,
    /// The stable model to run in shadow, and how often.
    pub shadow: Option<(&'a str, u32)>,
}

/// The device's cohort, 0–99: stable across runs, machines and releases.
pub fn cohort(device_id: &str) -> u32 {
    (crate::fnv1a(device_id.as_bytes()) % 100) as u32
}

fn model_name(value: &str, field: &str) -> Result<String, String> {
    if value.is_empty() || value.starts_with('/') || value.split('/').any(|part| part == ".." || part.is_empty()) {
        return Err(format!(
            "\"{field}\": '{value}' is not a model name relative to the manifest's folder"
        ));
    }
    Ok(value.to_string())
}

impl Manifest {
    /// Every device runs `stable`.
    pub fn stable_only(stable: &str) -> Self {
        Self {
            stable: stable.to_string(),
            candidate: None,
            canary_percent: 0,
            shadow_every: DEFAULT_SHADOW_EVERY,
            rolled_back: Vec::new(),
        }
    }

    pub fn parse(text: &str) -> Result<Self, String> {
        let v: Value = serde_json::from_str(text).map_err(|e| format!("not JSON ({e})"))?;
        let stable = v
            .get("stable")
            .and_then(Value::as_str)
            .ok_or("no \"stable\" model name")?;
        let candidate = match v.get("candidate") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(model_name(s, "candidate")?),
            Some(other) => return Err(format!("\"candidate\" must be a model name or null, not {other}")),
        };
        let number = |field: &str, default: u32| -> Result<u32, String> {
            match v.get(field) {
                None | Some(Value::Null) => Ok(default),
                Some(n) => n
                    .as_u64()
                    .and_then(|n| u32::try_from(n).ok())
                    .ok_or(format!("\"{field}\" must be a whole number, not {n}")),
            }
        };
        let canary_percent = number("canary_percent", 0)?;
        if canary_percent > 100 {
            return Err(format!("\"canary_percent\" is {canary_percent}: at most 100"));
        }
        let rolled_back = match v.get("rolled_back") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(items)) => items
                .iter()
                .map(|i| {
                    i.as_str()
                        .map(str::to_string)
                        .ok_or("\"rolled_back\" must list model names")
                })
                .collect::<Result<_, _>>()?,
            Some(_) => return Err("\"rolled_back\" must list model names".into()),
        };
        Ok(Self {
            stable: model_name(stable, "stable")?,
            candidate,
            canary_percent,
            shadow_every: number("shadow_every", DEFAULT_SHADOW_EVERY)?,
            rolled_back,
        })
    }

    pub fn to_json(&self) -> String {
        let mut text = serde_json::to_string_pretty(&json!({
            "stable": self.stable,
            "candidate": self.candidate,
            "canary_percent": self.canary_percent,
            "shadow_every": self.shadow_every,
            "rolled_back": self.rolled_back,
        }))
        .expect("a JSON value serialises");
        text.push('\n');
        text
    }

    /// What the device `device_id` runs.
    pub fn assignment(&self, device_id: &str) -> Assignment<'_> {
        match &self.candidate {
            Some(candidate) if cohort(device_id) < self.canary_percent => Assignment {
                model: candidate,
                canary: true,
                shadow: (self.shadow_every > 0 && *candidate != self.stable)
                    .then_some((self.stable.as_str(), self.shadow_every)),
            },
            _ => Assignment {
                model: &self.stable,
                canary: false,
                shadow: None,
            },
        }
    }
}

/// How far two detectors agree on one frame: matched boxes (same label, IoU ≥ 0.5, greedy by overlap) over
/// all boxes, as an F1 score; 1 when neither found anything.
pub fn agreement(a: &[(&str, BBox)], b: &[(&str, BBox)]) -> f64 {
    if a.is_empty() && b.is_empty() {
        return 1.0;
    }
    let mut pairs: Vec<(f32, usize, usize)> = Vec::new();
    for (i, (la, ba)) in a.iter().enumerate() {
        for (j, (lb, bb)) in b.iter().enumerate() {
            let iou = ba.iou(bb);
            if la == lb && iou >= 0.5 {
                pairs.push((iou, i, j));
            }
        }
    }
    pairs.sort_by(|x, y| y.0.total_cmp(&x.0));
    let (mut used_a, mut used_b) = (vec![false; a.len()], vec![false; b.len()]);
    let mut matched = 0usize;
    for (_, i, j) in pairs {
        if !used_a[i] && !used_b[j] {
            used_a[i] = true;
            used_b[j] = true;
            matched += 1;
        }
    }
    2.0 * matched as f64 / (a.len() + b.len()) as f64
}

/// What a device reports about the model it runs, counted since that model was swapped in.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Verdict {
    pub device: String,
    /// The model's name in the manifest (or its path when no manifest is used).
    pub model: String,
    pub canary: bool,
    /// Frames that left the element since the start (every model).
    pub total_frames: u64,
    /// Frames and inferences with this model.
    pub frames: u64,
    pub inferences: u64,
    pub detections_per_inference: f64,
    /// Frames also run through the stable model, their mean agreement, and the stable model's detections.
    pub shadow_frames: u64,
    pub agreement: Option<f64>,
    pub stable_detections_per_inference: Option<f64>,
    /// 95th percentile of the recent run times of this model and of the stable model in shadow.
    pub p95_ms: Option<f64>,
    pub stable_p95_ms: Option<f64>,
    /// Runs of this model that failed (the pipeline stops with an error; its last verdict counts it).
    pub errors: u64,
    /// Shadow runs of the stable model that failed: not held against the candidate.
    pub stable_errors: u64,
    /// Boxes with a coordinate or score that is not a finite number (dropped before they reach the metadata).
    pub nonfinite: u64,
}

impl Verdict {
    pub fn to_json(&self) -> String {
        json!({
            "device": self.device,
            "model": self.model,
            "canary": self.canary,
            "total_frames": self.total_frames,
            "frames": self.frames,
            "inferences": self.inferences,
            "detections_per_inference": self.detections_per_inference,
            "shadow_frames": self.shadow_frames,
            "agreement": self.agreement,
            "stable_detections_per_inference": self.stable_detections_per_inference,
            "p95_ms": self.p95_ms,
            "stable_p95_ms": self.stable_p95_ms,
            "errors": self.errors,
            "stable_errors": self.stable_errors,
            "nonfinite": self.nonfinite,
        })
        .to_string()
    }

    pub fn parse(text: &str) -> Result<Self, String> {
        let v: Value = serde_json::from_str(text).map_err(|e| format!("not JSON ({e})"))?;
        let text_of = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
        let count = |k: &str| v.get(k).and_then(Value::as_u64).unwrap_or(0);
        let real = |k: &str| v.get(k).and_then(Value::as_f64);
        Ok(Self {
            device: text_of("device").ok_or("no \"device\"")?,
            model: text_of("model").ok_or("no \"model\"")?,
            canary: v.get("canary").and_then(Value::as_bool).unwrap_or(false),
            total_frames: count("total_frames"),
            frames: count("frames"),
            inferences: count("inferences"),
            detections_per_inference: real("detections_per_inference").unwrap_or(0.0),
            shadow_frames: count("shadow_frames"),
            agreement: real("agreement"),
            stable_detections_per_inference: real("stable_detections_per_inference"),
            p95_ms: real("p95_ms"),
            stable_p95_ms: real("stable_p95_ms"),
            errors: count("errors"),
            stable_errors: count("stable_errors"),
            nonfinite: count("nonfinite"),
        })
    }
}

/// When a candidate is good enough, or bad enough.
#[derive(Debug, Clone, PartialEq)]
pub struct Rules {
    /// Shadow frames a canary needs before its verdict counts.
    pub min_shadow_frames: u64,
    /// Canaries with enough shadow frames needed to promote.
    pub min_canaries: usize,
    /// Lowest mean agreement with the stable model.
    pub min_agreement: f64,
    /// Highest p95 run time of the candidate over the stable model's, measured on the same device; a
    /// difference under `LATENCY_NOISE_MS` never counts (sub-millisecond runs vary by more than 1.5x).
    pub max_latency_ratio: f64,
}

/// p95 differences below this are scheduling noise, not a slower model.
pub const LATENCY_NOISE_MS: f64 = 2.0;

impl Default for Rules {
    fn default() -> Self {
        Self {
            min_shadow_frames: 20,
            min_canaries: 1,
            min_agreement: 0.8,
            max_latency_ratio: 1.5,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Every canary that has seen enough passed.
    Promote(String),
    /// The reasons, one per failing device.
    Rollback(Vec<String>),
    /// Not enough evidence yet (why).
    Wait(String),
}

/// The verdict on the manifest's candidate from the devices' latest verdicts (those about other models are
/// ignored). One failing canary is enough to roll back; errors and non-finite outputs fail at once.
pub fn judge(manifest: &Manifest, verdicts: &[Verdict], rules: &Rules) -> Decision {
    let Some(candidate) = &manifest.candidate else {
        return Decision::Wait("no candidate in the manifest".into());
    };
    let canaries: Vec<&Verdict> = verdicts.iter().filter(|v| v.model == *candidate && v.canary).collect();
    let mut reasons = Vec::new();
    let mut ready = 0;
    for v in &canaries {
        if v.errors > 0 || v.nonfinite > 0 {
            reasons.push(format!(
                "{}: {} failed runs, {} non-finite boxes",
                v.device, v.errors, v.nonfinite
            ));
            continue;
        }
        if v.shadow_frames < rules.min_shadow_frames {
            continue;
        }
        ready += 1;
        if let Some(a) = v.agreement.filter(|a| *a < rules.min_agreement) {
            reasons.push(format!(
                "{}: agreement with the stable model {a:.2} < {:.2} over {} frames",
                v.device, rules.min_agreement, v.shadow_frames
            ));
        }
        if let (Some(p), Some(s)) = (v.p95_ms, v.stable_p95_ms)
            && p > s * rules.max_latency_ratio
            && p - s > LATENCY_NOISE_MS
        {
            reasons.push(format!(
                "{}: p95 inference {p:.1} ms > {:.1} x the stable model's {s:.1} ms",
                v.device, rules.max_latency_ratio
            ));
        }
    }
    if !reasons.is_empty() {
        return Decision::Rollback(reasons);
    }
    if ready >= rules.min_canaries.max(1) {
        return Decision::Promote(format!(
            "{ready} canary device(s) agree with the stable model over at least {} frames each",
            rules.min_shadow_frames
        ));
    }
    Decision::Wait(format!(
        "{ready} of {} canary device(s) running {candidate} have {} shadow frames; {} needed",
        canaries.len(),
        rules.min_shadow_frames,
        rules.min_canaries.max(1)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(percent: u32) -> Manifest {
        Manifest {
            candidate: Some("model-b.onnx".into()),
            canary_percent: percent,
            ..Manifest::stable_only("model-a.onnx")
        }
    }

    #[test]
    fn cohorts_are_stable_and_a_larger_share_only_adds_devices() {
        let devices: Vec<String> = (0..1000).map(|i| format!("cam-{i}")).collect();
        let canaries = |p| devices.iter().filter(|d| manifest(p).assignment(d).canary).count();
        // About the share asked for (FNV-1a spreads sequential names evenly).
        assert!((70..=130).contains(&canaries(10)), "{}", canaries(10));
        assert_eq!(canaries(0), 0);
        assert_eq!(canaries(100), 1000);
        for d in &devices {
            if manifest(10).assignment(d).canary {
                assert!(manifest(30).assignment(d).canary, "{d}");
            }
        }
        assert_eq!(cohort("cam-7"), cohort("cam-7"));
        let a = manifest(100);
        let got = a.assignment("cam-1");
        assert_eq!(got.model, "model-b.onnx");
        assert_eq!(got.shadow, Some(("model-a.onnx", DEFAULT_SHADOW_EVERY)));
        assert_eq!(manifest(0).assignment("cam-1").model, "model-a.onnx");
    }

    #[test]
    fn manifests_round_trip_and_bad_ones_say_why() {
        let m = Manifest {
            rolled_back: vec!["model-c.onnx".into()],
            ..manifest(25)
        };
        assert_eq!(Manifest::parse(&m.to_json()).unwrap(), m);
        assert_eq!(
            Manifest::parse(r#"{"stable":"a.onnx"}"#).unwrap(),
            Manifest::stable_only("a.onnx")
        );
        for (text, why) in [
            (r#"{"candidate":"a.onnx"}"#, "stable"),
            (r#"{"stable":"../a.onnx"}"#, "relative"),
            (r#"{"stable":"/a.onnx"}"#, "relative"),
            (r#"{"stable":"a.onnx","canary_percent":101}"#, "at most 100"),
            (r#"{"stable":"a.onnx","canary_percent":-1}"#, "whole number"),
            (r#"{"stable":"a.onnx","candidate":3}"#, "candidate"),
            ("stable: a.onnx", "not JSON"),
        ] {
            let e = Manifest::parse(text).unwrap_err();
            assert!(e.contains(why), "{text}: {e}");
        }
    }

    fn b(x: f32) -> BBox {
        BBox {
            x0: x,
            y0: 0.0,
            x1: x + 0.2,
            y1: 0.2,
        }
    }

    #[test]
    fn agreement_counts_same_label_overlaps_once() {
        assert_eq!(agreement(&[], &[]), 1.0);
        assert_eq!(agreement(&[("car", b(0.0))], &[]), 0.0);
        assert_eq!(agreement(&[("car", b(0.0))], &[("car", b(0.01))]), 1.0);
        // A permuted label list: the same boxes under other names agree on nothing.
        assert_eq!(agreement(&[("car", b(0.0))], &[("sign", b(0.0))]), 0.0);
        // One box cannot match two.
        let two = [("car", b(0.0)), ("car", b(0.02))];
        assert!((agreement(&two, &[("car", b(0.0))]) - 2.0 / 3.0).abs() < 1e-9);
    }

    fn verdict(device: &str, shadow_frames: u64, agreement: f64) -> Verdict {
        Verdict {
            device: device.into(),
            model: "model-b.onnx".into(),
            canary: true,
            shadow_frames,
            agreement: Some(agreement),
            p95_ms: Some(10.0),
            stable_p95_ms: Some(9.0),
            ..Default::default()
        }
    }

    #[test]
    fn judging_waits_for_evidence_and_one_bad_canary_rolls_back() {
        let rules = Rules::default();
        let m = manifest(20);
        assert!(matches!(judge(&m, &[verdict("a", 5, 1.0)], &rules), Decision::Wait(_)));
        assert!(matches!(
            judge(&m, &[verdict("a", 25, 0.95)], &rules),
            Decision::Promote(_)
        ));
        let d = judge(&m, &[verdict("a", 25, 0.95), verdict("b", 30, 0.1)], &rules);
        assert!(
            matches!(&d, Decision::Rollback(r) if r.len() == 1 && r[0].starts_with("b:")),
            "{d:?}"
        );
        let slow = Verdict {
            p95_ms: Some(20.0),
            ..verdict("a", 25, 0.95)
        };
        assert!(matches!(judge(&m, &[slow], &rules), Decision::Rollback(_)));
        let tiny = Verdict {
            p95_ms: Some(0.1),
            stable_p95_ms: Some(0.04),
            ..verdict("a", 25, 0.95)
        };
        assert!(matches!(judge(&m, &[tiny], &rules), Decision::Promote(_)));
        let broken = Verdict {
            errors: 1,
            ..verdict("a", 1, 1.0)
        };
        assert!(matches!(judge(&m, &[broken], &rules), Decision::Rollback(_)));
        // Verdicts about another model (the stable one, an older candidate) do not count.
        let stale = Verdict {
            model: "model-a.onnx".into(),
            ..verdict("a", 25, 0.1)
        };
        assert!(matches!(judge(&m, &[stale], &rules), Decision::Wait(_)));
        let parsed = Verdict::parse(&verdict("a", 25, 0.95).to_json()).unwrap();
        assert_eq!(parsed, verdict("a", 25, 0.95));
    }
}
