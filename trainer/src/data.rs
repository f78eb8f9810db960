//! Datasets for training: one or more Pascal VOC folders (captures) merged under one label set, validated
//! sample by sample.

use detection_common::labels::Labels;
use detection_common::voc::{Dataset, Problem, Sample, Split};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;

/// Several captures read together. Labels must agree: a later folder may add labels at the end, never
/// reorder or rename the earlier ones (class ids would change under a trained model).
#[derive(Debug, Default)]
pub struct Merged {
    pub labels: Labels,
    pub samples: Vec<Sample>,
    pub problems: Vec<Problem>,
    pub folders: Vec<(PathBuf, bool)>,
    /// Samples with a box a person must look at first (`<review>`, e.g. a missed object the capture saved):
    /// left out of training and evaluation until the mark is removed.
    pub awaiting_review: Vec<Sample>,
}

pub fn open_all(dirs: &[PathBuf]) -> Result<Merged, Problem> {
    let mut merged = Merged::default();
    for dir in dirs {
        let ds = Dataset::open(dir)?;
        let (old, new) = (merged.labels.foreground(), ds.labels.foreground());
        let common = old.len().min(new.len());
        if old[..common] != new[..common] {
            return Err(Problem {
                file: dir.join("labels.txt"),
                line: 0,
                message: format!(
                    "labels ({}) disagree with the earlier folders' ({})",
                    new.join(", "),
                    old.join(", ")
                ),
            });
        }
        if new.len() > old.len() {
            merged.labels = ds.labels.clone();
        }
        merged.folders.push((dir.clone(), ds.has_image_sets));
        let (waiting, ready): (Vec<Sample>, Vec<Sample>) =
            ds.samples.into_iter().partition(|s| s.annotation.awaits_review());
        merged.samples.extend(ready);
        merged.awaiting_review.extend(waiting);
        merged.problems.extend(ds.problems);
    }
    Ok(merged)
}

/// Why an image cannot be trained on, or None: it must decode, and a JPEG must end with its end-of-image
/// marker (a truncated file may still decode, grey at the bottom, and teach the model wrong pixels).
pub fn image_fault(path: &std::path::Path) -> Option<String> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) => return Some(format!("cannot read: {e}")),
    };
    if bytes.starts_with(&[0xFF, 0xD8]) {
        // Trailing padding after EOI is allowed; a missing EOI is not.
        let end = bytes.iter().rposition(|&b| b != 0).map(|i| i + 1).unwrap_or(0);
        if end < 4 || bytes[end - 2..end] != [0xFF, 0xD9] {
            return Some("truncated JPEG (no end-of-image marker)".into());
        }
    }
    match image::load_from_memory(&bytes) {
        Ok(img) if img.width() > 0 && img.height() > 0 => None,
        Ok(_) => Some("empty image".into()),
        Err(e) => Some(format!("cannot decode: {e}")),
    }
}

impl Merged {
    /// Decodes every image (on all cores); a sample whose image is undecodable or truncated leaves the
    /// samples and becomes a problem, so training never meets it mid-epoch.
    pub fn verify_images(&mut self) {
        let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
        let chunk = self.samples.len().div_ceil(threads).max(1);
        let faults: Vec<Option<String>> = std::thread::scope(|scope| {
            let workers: Vec<_> = self
                .samples
                .chunks(chunk)
                .map(|part| {
                    scope.spawn(move || {
                        part.iter()
                            .map(|s| {
                                // A decoder that panics on a hostile file is a fault of that file, not the end.
                                std::panic::catch_unwind(|| image_fault(&s.image))
                                    .unwrap_or_else(|_| Some("the image decoder failed on this file".into()))
                            })
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            workers
                .into_iter()
                .flat_map(|w| w.join().expect("image checks catch their panics"))
                .collect()
        });
        let mut kept = Vec::with_capacity(self.samples.len());
        for (sample, fault) in std::mem::take(&mut self.samples).into_iter().zip(faults) {
            match fault {
                None => kept.push(sample),
                Some(message) => self.problems.push(Problem {
                    file: sample.image.clone(),
                    line: 0,
                    message,
                }),
            }
        }
        self.samples = kept;
    }

    /// Objects per label for train / val / test.
    pub fn class_counts(&self) -> BTreeMap<usize, (String, [usize; 3])> {
        let mut counts: BTreeMap<usize, (String, [usize; 3])> = self
            .labels
            .foreground()
            .iter()
            .enumerate()
            .map(|(i, l)| (i + 1, (l.clone(), [0; 3])))
            .collect();
        for s in &self.samples {
            for o in &s.annotation.objects {
                if let Some(id) = self.labels.id_of(&o.name) {
                    counts.get_mut(&id).expect("every label is counted").1[s.split as usize] += 1;
                }
            }
        }
        counts
    }

    /// Each class's share of all objects (every split), in class id order.
    pub fn class_shares(&self) -> Vec<(String, f32)> {
        let counts = self.class_counts();
        let total: usize = counts.values().map(|(_, c)| c.iter().sum::<usize>()).sum();
        counts
            .into_values()
            .map(|(name, c)| (name, c.iter().sum::<usize>() as f32 / total.max(1) as f32))
            .collect()
    }

    /// A warning for each class below `min_share` of the objects: the model will hardly learn it.
    pub fn balance_warnings(&self, min_share: f32) -> Vec<String> {
        if self.samples.iter().all(|s| s.annotation.objects.is_empty()) {
            // Nothing labelled yet: no balance to speak of.
            return Vec::new();
        }
        self.class_shares()
            .into_iter()
            .filter(|(_, share)| *share < min_share)
            .map(|(name, share)| {
                format!(
                    "warning: class '{name}' has {:.1}% of the objects (below {:.1}%): capture more of it, or \
                     expect a weak detector for it",
                    share * 100.0,
                    min_share * 100.0
                )
            })
            .collect()
    }

    /// How many samples wait for review, with the first few names; None when none do.
    pub fn review_note(&self) -> Option<String> {
        let n = self.awaiting_review.len();
        (n > 0).then(|| {
            let names: Vec<&str> = self.awaiting_review.iter().take(5).map(|s| s.id.as_str()).collect();
            format!(
                "{n} samples wait for review ({}{}): a box is marked <review> (e.g. missed: where a track predicted \
                 an object the detector did not find); they are not trained on until a person fixes the box and \
                 removes the mark",
                names.join(", "),
                if n > 5 { ", …" } else { "" }
            )
        })
    }

    /// The report `check` prints: folders, images per split, objects per class, then every problem.
    pub fn report(&self) -> String {
        let mut out = String::new();
        for (dir, sets) in &self.folders {
            let how = if *sets {
                "splits from ImageSets/Main"
            } else {
                "no ImageSets: split by a hash of the image name"
            };
            let _ = writeln!(out, "{}: {how}", dir.display());
        }
        let per_split = |s: Split| self.samples.iter().filter(|x| x.split == s).count();
        let _ = writeln!(
            out,
            "{} images: {} train, {} val, {} test",
            self.samples.len(),
            per_split(Split::Train),
            per_split(Split::Val),
            per_split(Split::Test)
        );
        let _ = writeln!(
            out,
            "{:<4} {:<24} {:>7} {:>7} {:>7} {:>7}",
            "id", "class", "train", "val", "test", "share"
        );
        let shares = self.class_shares();
        for ((id, (name, [tr, va, te])), (_, share)) in self.class_counts().into_iter().zip(&shares) {
            let _ = writeln!(
                out,
                "{id:<4} {name:<24} {tr:>7} {va:>7} {te:>7} {:>6.1}%",
                share * 100.0
            );
        }
        if let Some(note) = self.review_note() {
            let _ = writeln!(out, "{note}");
        }
        if self.problems.is_empty() {
            let _ = writeln!(out, "no problems found");
        } else {
            let _ = writeln!(out, "{} problems:", self.problems.len());
            for p in &self.problems {
                let _ = writeln!(out, "  {p}");
            }
        }
        out
    }
}

/// A decoded image (packed RGB) with its objects as targets in pixels (class ids from `labels`).
pub struct Decoded {
    pub rgb: Vec<u8>,
    pub width: usize,
    pub height: usize,
    pub targets: Vec<crate::loss::Target>,
    /// Per target: VOC's "difficult" (neither missed nor matched in evaluation).
    pub difficult: Vec<bool>,
}

impl Decoded {
    pub fn source(&self) -> crate::augment::Source<'_> {
        crate::augment::Source {
            rgb: &self.rgb,
            width: self.width,
            height: self.height,
            boxes: &self.targets,
        }
    }
}

/// Reads `sample`'s image. Boxes are scaled from the annotation's declared size to the decoded one, so an image
/// re-encoded at another resolution keeps its labels.
pub fn decode(sample: &Sample, labels: &Labels) -> Result<Decoded, String> {
    let img = image::open(&sample.image)
        .map_err(|e| format!("{}: cannot decode: {e}", sample.image.display()))?
        .to_rgb8();
    let (width, height) = (img.width() as usize, img.height() as usize);
    let a = &sample.annotation;
    let sx = if a.width > 0 {
        width as f32 / a.width as f32
    } else {
        1.0
    };
    let sy = if a.height > 0 {
        height as f32 / a.height as f32
    } else {
        1.0
    };
    let (mut targets, mut difficult) = (Vec::new(), Vec::new());
    for o in &a.objects {
        if let Some(class_id) = labels.id_of(&o.name) {
            targets.push(crate::loss::Target {
                bbox: detection_common::BBox::new(o.xmin * sx, o.ymin * sy, o.xmax * sx, o.ymax * sy),
                class_id,
            });
            difficult.push(o.difficult);
        }
    }
    Ok(Decoded {
        rgb: img.into_raw(),
        width,
        height,
        targets,
        difficult,
    })
}
