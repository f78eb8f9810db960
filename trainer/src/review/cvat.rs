//! Review in CVAT: a captured VOC folder out as one "CVAT for images 1.1" file (`review export-cvat`; the images
//! themselves are the folder's JPEGImages/, uploaded to the CVAT task as they are) and the reviewed file back in
//! (`review import-cvat`). A box's `review` attribute carries its mark; clearing it confirms the box.

use super::{Imported, by_file, check_box, open, review_order, write_back};
use detection_common::cvat::{self, CvatBox, CvatImage};
use detection_common::files::write_atomically;
use detection_common::voc::VocObject;
use std::path::Path;

/// Writes every sample of the folder `data` into `output`; samples with a box awaiting review come first.
pub fn export_cvat(data: &Path, output: &Path) -> Result<usize, String> {
    let dataset = open(data)?;
    let images: Vec<CvatImage> = review_order(&dataset)
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

/// Reads the reviewed `input` back into the folder `data`. Every image of the file must be a sample of the folder
/// and every label one of its classes (checked before anything is written); samples the file does not list are
/// left alone.
pub fn import_cvat(data: &Path, input: &Path) -> Result<Imported, String> {
    let dataset = open(data)?;
    let text = std::fs::read_to_string(input).map_err(|e| format!("cannot read {}: {e}", input.display()))?;
    let images = cvat::parse(&text, input).map_err(|p| p.to_string())?;
    let by_file = by_file(&dataset);
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
        for o in &objects {
            check_box(&dataset, data, &input.display().to_string(), sample, o)?;
        }
        updates.push((*sample, objects));
    }
    write_back(data, updates, false, &mut |_, _| Ok(()))
}
