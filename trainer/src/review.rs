//! Review in CVAT: a captured VOC folder out as one "CVAT for images 1.1" file (`review export-cvat`; the images
//! themselves are the folder's JPEGImages/, uploaded to the CVAT task as they are) and the reviewed file back in
//! (`review import-cvat`): a sample whose boxes the reviewer changed is rewritten with them and says
//! `<reviewed>1</reviewed>`; an untouched sample stays byte for byte as it was, so a second import changes nothing.

use detection_common::cvat::{self, CvatBox, CvatImage};
use detection_common::files::write_atomically;
use detection_common::voc::{Annotation, Dataset, VocObject, write_annotation};
use std::collections::BTreeMap;
use std::path::Path;

/// Boxes closer than this (pixels, every corner) are the same box: CVAT writes two decimals.
const SAME_BOX_PX: f32 = 0.5;

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

/// Writes every sample of the folder `data` into `output`; samples with a box awaiting review come first.
pub fn export_cvat(data: &Path, output: &Path) -> Result<usize, String> {
    let dataset = open(data)?;
    let mut samples: Vec<_> = dataset.samples.iter().collect();
    samples.sort_by_key(|s| (!s.annotation.awaits_review(), s.id.clone()));
    let images: Vec<CvatImage> = samples
        .iter()
        .map(|s| CvatImage {
            name: s.annotation.filename.clone(),
            width: s.annotation.width,
            height: s.annotation.height,
            boxes: s
                .annotation
                .objects
                .iter()
                .map(|o| CvatBox {
                    label: o.name.clone(),
                    xtl: o.xmin,
                    ytl: o.ymin,
                    xbr: o.xmax,
                    ybr: o.ymax,
                    confidence: o.confidence,
                    review: o.review.clone(),
                })
                .collect(),
        })
        .collect();
    let task = data
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let xml = cvat::write(&task, dataset.labels.foreground(), &images);
    write_atomically(output, xml.as_bytes()).map_err(|e| format!("cannot write {}: {e}", output.display()))?;
    Ok(images.len())
}

/// What an import changed.
#[derive(Debug, Default, PartialEq)]
pub struct Imported {
    pub changed: usize,
    pub unchanged: usize,
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

/// The same boxes in any order (CVAT lists them in its own).
fn same_boxes(old: &[VocObject], new: &[VocObject]) -> bool {
    let mut used = vec![false; new.len()];
    old.len() == new.len()
        && old.iter().all(|a| {
            let found = (0..new.len()).find(|&i| !used[i] && same(a, &new[i]));
            found.map(|i| used[i] = true).is_some()
        })
}

/// Reads the reviewed `input` back into the folder `data`. Every image of the file must be a sample of the folder
/// and every label one of its classes (checked before anything is written); samples the file does not list are
/// left alone.
pub fn import_cvat(data: &Path, input: &Path) -> Result<Imported, String> {
    let dataset = open(data)?;
    let text = std::fs::read_to_string(input).map_err(|e| format!("cannot read {}: {e}", input.display()))?;
    let images = cvat::parse(&text, input).map_err(|p| p.to_string())?;
    let by_file: BTreeMap<&str, &detection_common::voc::Sample> = dataset
        .samples
        .iter()
        .map(|s| (s.annotation.filename.as_str(), s))
        .collect();
    let mut updates = Vec::new();
    for image in &images {
        let sample = by_file.get(image.name.as_str()).ok_or_else(|| {
            format!(
                "{}: image {} is not a sample of {}",
                input.display(),
                image.name,
                data.display()
            )
        })?;
        if let Some(b) = image.boxes.iter().find(|b| dataset.labels.id_of(&b.label).is_none()) {
            return Err(format!(
                "{}: {} has a box labelled '{}', not one of the dataset's classes ({}); add it to {} first",
                input.display(),
                image.name,
                b.label,
                dataset.labels.foreground().join(", "),
                data.join("labels.txt").display()
            ));
        }
        let (w, h) = (sample.annotation.width as f32, sample.annotation.height as f32);
        if let Some(b) = image
            .boxes
            .iter()
            .find(|b| b.xtl < 0.0 || b.ytl < 0.0 || b.xbr > w + 1.0 || b.ybr > h + 1.0)
        {
            return Err(format!(
                "{}: {}'s box '{}' ({}, {}, {}, {}) lies outside the {w}x{h} image",
                input.display(),
                image.name,
                b.label,
                b.xtl,
                b.ytl,
                b.xbr,
                b.ybr
            ));
        }
        let objects: Vec<VocObject> = image
            .boxes
            .iter()
            .map(|b| VocObject {
                review: b.review.clone(),
                name: b.label.clone(),
                xmin: b.xtl,
                ymin: b.ytl,
                xmax: b.xbr,
                ymax: b.ybr,
                difficult: false,
                confidence: b.confidence,
            })
            .collect();
        let untouched = same_boxes(&sample.annotation.objects, &objects);
        updates.push((sample, (!untouched).then_some(objects)));
    }
    let mut report = Imported::default();
    for (sample, objects) in updates {
        let Some(objects) = objects else {
            report.unchanged += 1;
            continue;
        };
        let annotation = Annotation {
            reviewed: true,
            objects,
            ..sample.annotation.clone()
        };
        let path = data.join("Annotations").join(format!("{}.xml", sample.id));
        write_atomically(&path, write_annotation(&annotation).as_bytes())
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        report.changed += 1;
    }
    Ok(report)
}
