//! Dataset snapshots: exactly which samples a training used (name, content hash, labels), so that a model can
//! be traced to its data and a training repeated on the same data while captures keep arriving. `snapshot`
//! writes one, `train --snapshot` trains on exactly its samples, and every training writes OUT/snapshot.json and
//! puts the snapshot's id into its checkpoints and exported model.

use crate::data::Merged;
use detection_common::voc::{Sample, write_annotation};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::Path;

/// The format line of a snapshot file.
const FORMAT: &str = "mobilenet-trainer dataset snapshot 1";

/// Model and checkpoint metadata: the id of the snapshot the model was trained on.
pub const KEY_SNAPSHOT: &str = "mobilenet-trainer.dataset-snapshot";

/// One sample as a snapshot records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The sample's id (its image and annotation file names without extension).
    pub name: String,
    /// SHA-256 of the image file's bytes and of the annotation's content.
    pub sha256: String,
    /// The objects' class names, in the annotation's order.
    pub labels: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// The dataset's class list (without the background).
    pub labels: Vec<String>,
    /// In name order.
    pub entries: Vec<Entry>,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The content hash of one sample: its image bytes, then its annotation as the trainer reads it (so that
/// re-indenting an XML file is no change, while a moved box is).
fn sample_hash(sample: &Sample) -> Result<String, String> {
    let image = std::fs::read(&sample.image).map_err(|e| format!("cannot read {}: {e}", sample.image.display()))?;
    let mut h = Sha256::new();
    h.update(Sha256::digest(&image));
    h.update(Sha256::digest(write_annotation(&sample.annotation).as_bytes()));
    Ok(hex(&h.finalize()))
}

impl Snapshot {
    /// Hashes every sample of `merged`. Two samples with one name (from two folders) are refused: a snapshot
    /// could not tell them apart.
    pub fn of(merged: &Merged) -> Result<Self, String> {
        let mut by_name: BTreeMap<&str, &Sample> = BTreeMap::new();
        for s in &merged.samples {
            if let Some(other) = by_name.insert(&s.id, s) {
                return Err(format!(
                    "two samples are named '{}' ({} and {}): rename one before taking a snapshot",
                    s.id,
                    other.image.display(),
                    s.image.display()
                ));
            }
        }
        let entries = by_name
            .values()
            .map(|s| {
                Ok(Entry {
                    name: s.id.clone(),
                    sha256: sample_hash(s)?,
                    labels: s.annotation.objects.iter().map(|o| o.name.clone()).collect(),
                })
            })
            .collect::<Result<Vec<_>, String>>()?;
        Ok(Self {
            labels: merged.labels.foreground().to_vec(),
            entries,
        })
    }

    /// The snapshot's identity: SHA-256 over its class list and entries.
    pub fn id(&self) -> String {
        let mut h = Sha256::new();
        h.update(self.labels.join("\n").as_bytes());
        for e in &self.entries {
            h.update(format!("\0{}\t{}\t{}", e.name, e.sha256, e.labels.join(",")).as_bytes());
        }
        hex(&h.finalize())
    }

    pub fn to_json(&self) -> String {
        let samples: Vec<serde_json::Value> = self
            .entries
            .iter()
            .map(|e| serde_json::json!({ "name": e.name, "sha256": e.sha256, "labels": e.labels }))
            .collect();
        let v = serde_json::json!({
            "format": FORMAT, "id": self.id(), "labels": self.labels, "samples": samples,
        });
        serde_json::to_string_pretty(&v).expect("JSON values serialise") + "\n"
    }

    pub fn read(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let bad = |why: &str| format!("{}: not a dataset snapshot ({why})", path.display());
        let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| bad(&e.to_string()))?;
        if v["format"] != FORMAT {
            return Err(bad(&format!("format is {}, expected \"{FORMAT}\"", v["format"])));
        }
        let strings = |v: &serde_json::Value, what: &str| -> Result<Vec<String>, String> {
            v.as_array()
                .ok_or_else(|| bad(&format!("{what} is not a list")))?
                .iter()
                .map(|s| {
                    s.as_str()
                        .map(str::to_string)
                        .ok_or_else(|| bad(&format!("{what}: not a string")))
                })
                .collect()
        };
        let labels = strings(&v["labels"], "labels")?;
        let entries = v["samples"]
            .as_array()
            .ok_or_else(|| bad("samples is not a list"))?
            .iter()
            .map(|s| {
                Ok(Entry {
                    name: s["name"]
                        .as_str()
                        .ok_or_else(|| bad("a sample without a name"))?
                        .to_string(),
                    sha256: s["sha256"]
                        .as_str()
                        .ok_or_else(|| bad("a sample without sha256"))?
                        .to_string(),
                    labels: strings(&s["labels"], "a sample's labels")?,
                })
            })
            .collect::<Result<Vec<_>, String>>()?;
        let snapshot = Self { labels, entries };
        // A hand-edited file must not pass for the data it names.
        if v["id"] != snapshot.id() {
            return Err(bad("its id does not match its samples: the file was edited"));
        }
        Ok(snapshot)
    }

    /// Keeps in `merged` exactly the samples this snapshot names; fails naming every sample that went missing
    /// or changed, and a class list that differs.
    pub fn select(&self, merged: &mut Merged) -> Result<(), String> {
        if merged.labels.foreground() != self.labels.as_slice() {
            return Err(format!(
                "the data's classes are [{}], the snapshot's [{}]",
                merged.labels.foreground().join(", "),
                self.labels.join(", ")
            ));
        }
        let wanted: BTreeMap<&str, &Entry> = self.entries.iter().map(|e| (e.name.as_str(), e)).collect();
        let mut kept = Vec::with_capacity(self.entries.len());
        let (mut changed, mut found) = (Vec::new(), std::collections::BTreeSet::new());
        for s in std::mem::take(&mut merged.samples) {
            let Some(entry) = wanted.get(s.id.as_str()) else {
                continue;
            };
            if !found.insert(s.id.clone()) {
                return Err(format!("two samples are named '{}' in the data", s.id));
            }
            if sample_hash(&s)? != entry.sha256 {
                changed.push(format!("{} ({})", s.id, s.image.display()));
            }
            kept.push(s);
        }
        let missing: Vec<&str> = self
            .entries
            .iter()
            .map(|e| e.name.as_str())
            .filter(|n| !found.contains(*n))
            .collect();
        if !changed.is_empty() || !missing.is_empty() {
            let list = |v: Vec<String>| {
                let n = v.len();
                let shown: Vec<String> = v.into_iter().take(10).collect();
                format!("{n} ({}{})", shown.join(", "), if n > 10 { ", …" } else { "" })
            };
            let mut parts = Vec::new();
            if !missing.is_empty() {
                parts.push(format!(
                    "missing {}",
                    list(missing.iter().map(|s| s.to_string()).collect())
                ));
            }
            if !changed.is_empty() {
                parts.push(format!("changed {}", list(changed)));
            }
            return Err(format!(
                "the data no longer holds the snapshot's samples: {}",
                parts.join("; ")
            ));
        }
        merged.samples = kept;
        Ok(())
    }
}

/// What `train` does with snapshots: with `pinned`, trains on exactly that snapshot's samples; either way
/// writes the snapshot of what it trains on to `out/snapshot.json` and returns its id.
pub fn pin(merged: &mut Merged, pinned: Option<&Path>, out: &Path) -> Result<String, String> {
    if let Some(path) = pinned {
        Snapshot::read(path)?
            .select(merged)
            .map_err(|e| format!("{}: {e}", path.display()))?;
    }
    let snapshot = Snapshot::of(merged)?;
    std::fs::create_dir_all(out).map_err(|e| format!("cannot create {}: {e}", out.display()))?;
    let file = out.join("snapshot.json");
    detection_common::files::write_atomically(&file, snapshot.to_json().as_bytes())
        .map_err(|e| format!("cannot write {}: {e}", file.display()))?;
    let id = snapshot.id();
    eprintln!(
        "dataset snapshot {id}: {} samples (written to {})",
        snapshot.entries.len(),
        file.display()
    );
    Ok(id)
}
