//! Review of captured samples in a labelling tool: out with the model's boxes (scores and review marks kept,
//! samples awaiting review first), back with the reviewer's. Either way back, a sample whose boxes the reviewer
//! changed is rewritten with them and says `<reviewed>1</reviewed>`; an untouched sample stays byte for byte as it
//! was, so a second pass changes nothing.
//!
//! - [`cvat`]: a "CVAT for images 1.1" file (`review export-cvat` / `import-cvat`).
//! - [`label_studio`]: a Label Studio project over its HTTP API (`review push` / `pull`).

pub mod cvat;
pub mod label_studio;

use detection_common::files::write_atomically;
use detection_common::voc::{Annotation, Dataset, Sample, VocObject, write_annotation};
use std::collections::BTreeMap;
use std::path::Path;

/// Boxes closer than this (pixels, every corner) are the same box: tools round what they store.
const SAME_BOX_PX: f32 = 0.5;

/// Opens a folder to review; a dataset with problems is refused (fix it before asking people to look at it).
fn open(data: &Path) -> Result<Dataset, String> {
    let dataset = Dataset::open(data).map_err(|p| p.to_string())?;
    if let Some(p) = dataset.problems.first() {
        return Err(format!(
            "{p} (and {} more problems): run mobilenet-trainer check and fix the dataset first",
            dataset.problems.len() - 1
        ));
    }
    Ok(dataset)
}

/// Samples in review order: those with a box awaiting review, then the least confident first.
fn review_order(dataset: &Dataset) -> Vec<&Sample> {
    let mut samples: Vec<&Sample> = dataset.samples.iter().collect();
    samples.sort_by(|a, b| {
        (!a.annotation.awaits_review(), lowest_confidence(a), &a.id)
            .partial_cmp(&(!b.annotation.awaits_review(), lowest_confidence(b), &b.id))
            .unwrap_or(std::cmp::Ordering::Equal)
    });
    samples
}

/// The least confident box of a sample (a box without a confidence, a label a person drew, counts as sure).
fn lowest_confidence(sample: &Sample) -> f32 {
    let objects = &sample.annotation.objects;
    objects.iter().map(|o| o.confidence.unwrap_or(1.0)).fold(1.0, f32::min)
}

/// Where a changed annotation goes before it is written locally: given the sample id and the XML.
pub type Publish = dyn FnMut(&str, &[u8]) -> Result<(), String>;

/// What a review pass brought back.
#[derive(Debug, Default, PartialEq)]
pub struct Imported {
    pub changed: usize,
    pub unchanged: usize,
}

impl std::fmt::Display for Imported {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} samples changed (marked reviewed), {} unchanged",
            self.changed, self.unchanged
        )
    }
}

/// The folder's samples by image file name: how a tool's images are matched to samples.
fn by_file(dataset: &Dataset) -> BTreeMap<&str, &Sample> {
    dataset
        .samples
        .iter()
        .map(|s| (s.annotation.filename.as_str(), s))
        .collect()
}

fn same(a: &VocObject, b: &VocObject) -> bool {
    let close = |x: f32, y: f32| (x - y).abs() <= SAME_BOX_PX;
    a.name == b.name
        && a.review == b.review
        && close(a.xmin, b.xmin)
        && close(a.ymin, b.ymin)
        && close(a.xmax, b.xmax)
        && close(a.ymax, b.ymax)
}

/// The same boxes in any order (tools list them in their own).
fn same_boxes(old: &[VocObject], new: &[VocObject]) -> bool {
    let mut used = vec![false; new.len()];
    old.len() == new.len()
        && old.iter().all(|a| {
            let found = (0..new.len()).find(|&i| !used[i] && same(a, &new[i]));
            found.map(|i| used[i] = true).is_some()
        })
}

/// Checks a reviewed box of `sample` before anything is written: one of the dataset's classes, inside the image.
fn check_box(dataset: &Dataset, data: &Path, source: &str, sample: &Sample, o: &VocObject) -> Result<(), String> {
    if dataset.labels.id_of(&o.name).is_none() {
        return Err(format!(
            "{source}: {} has a box labelled '{}', not one of the dataset's classes ({}); add it to {} first",
            sample.annotation.filename,
            o.name,
            dataset.labels.foreground().join(", "),
            data.join("labels.txt").display()
        ));
    }
    let (w, h) = (sample.annotation.width as f32, sample.annotation.height as f32);
    if o.xmin < 0.0 || o.ymin < 0.0 || o.xmax > w + 1.0 || o.ymax > h + 1.0 || o.xmin >= o.xmax || o.ymin >= o.ymax {
        return Err(format!(
            "{source}: {}'s box '{}' ({}, {}, {}, {}) is empty or lies outside the {w}x{h} image",
            sample.annotation.filename, o.name, o.xmin, o.ymin, o.xmax, o.ymax
        ));
    }
    Ok(())
}

/// Writes the reviewed boxes of each sample into the folder `data`; samples whose boxes did not change are left
/// as they are, except that with `confirmed` (the tool says a person submitted them) an unchanged sample not yet
/// marked is marked reviewed, its boxes kept as they were. Every box was checked before this is called, so a bad
/// file writes nothing. `publish` gets each changed annotation first (an s3:// dataset's copy), so a failed
/// upload leaves the sample as it was in both.
fn write_back(
    data: &Path,
    reviewed: Vec<(&Sample, Vec<VocObject>)>,
    confirmed: bool,
    publish: &mut Publish,
) -> Result<Imported, String> {
    let mut report = Imported::default();
    for (sample, objects) in reviewed {
        let same = same_boxes(&sample.annotation.objects, &objects);
        if same && (!confirmed || sample.annotation.reviewed) {
            report.unchanged += 1;
            continue;
        }
        let annotation = Annotation {
            reviewed: true,
            objects: if same {
                sample.annotation.objects.clone()
            } else {
                objects
            },
            ..sample.annotation.clone()
        };
        let xml = write_annotation(&annotation);
        publish(&sample.id, xml.as_bytes())?;
        let path = data.join("Annotations").join(format!("{}.xml", sample.id));
        write_atomically(&path, xml.as_bytes()).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        report.changed += 1;
    }
    Ok(report)
}
