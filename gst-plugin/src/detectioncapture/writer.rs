//! The dataset on disk: folder layout, numbering that resumes after a restart, labels.txt, and atomic sample
//! writes (JPEG, then the XML that makes the sample exist).

use detection_common::voc::{Annotation, VocObject, hash_split, write_annotation};
use gst_video::VideoFormat;
use std::io::Write;
use std::path::{Path, PathBuf};

pub const PREFIX: &str = "frame-";

/// One box to save with a frame.
#[derive(Debug, Clone, PartialEq)]
pub struct SavedBox {
    pub label: String,
    pub class_id: u32,
    /// The detector's confidence; None for ground truth.
    pub confidence: Option<f32>,
    /// x, y, width, height in pixels.
    pub rect: (u32, u32, u32, u32),
}

/// One frame to save: the buffer is only referenced (no copy) until the worker encodes it.
pub struct Sample {
    pub buffer: gst::Buffer,
    pub info: gst_video::VideoInfo,
    pub boxes: Vec<SavedBox>,
}

pub struct DatasetWriter {
    root: PathBuf,
    next: u64,
    /// Labels by class id (index 0 is the background).
    labels: Vec<String>,
    quality: u8,
    pub bytes: u64,
}

fn write_atomically(path: &Path, data: &[u8]) -> std::io::Result<()> {
    detection_common::onnx::write_atomically(path, data)
}

impl DatasetWriter {
    /// Creates the folders (or opens an existing dataset: numbering continues after its last sample, its labels
    /// are kept).
    pub fn open(root: &Path, quality: u8, initial_labels: &[String]) -> Result<Self, String> {
        for sub in ["Annotations", "JPEGImages", "ImageSets/Main"] {
            std::fs::create_dir_all(root.join(sub))
                .map_err(|e| format!("cannot create {}: {e}", root.join(sub).display()))?;
        }
        // Probe that the folder is writable now rather than on the first frame.
        let probe = root.join(".detectioncapture-probe");
        std::fs::write(&probe, b"").map_err(|e| format!("cannot write in {}: {e}", root.display()))?;
        let _ = std::fs::remove_file(&probe);
        let mut next = 0;
        let mut bytes = 0;
        for entry in std::fs::read_dir(root.join("Annotations"))
            .map_err(|e| format!("cannot list {}: {e}", root.display()))?
            .flatten()
        {
            let name = entry.file_name().to_string_lossy().to_string();
            if let Some(n) = name
                .strip_prefix(PREFIX)
                .and_then(|r| r.strip_suffix(".xml"))
                .and_then(|n| n.parse::<u64>().ok())
            {
                next = next.max(n + 1);
                bytes += entry.metadata().map(|m| m.len()).unwrap_or(0);
                bytes += std::fs::metadata(root.join("JPEGImages").join(format!("{PREFIX}{n:06}.jpg")))
                    .map(|m| m.len())
                    .unwrap_or(0);
            }
        }
        let labels: Vec<String> = match std::fs::read_to_string(root.join("labels.txt")) {
            Ok(text) => {
                let l = detection_common::labels::Labels::parse(&text);
                (0..l.len())
                    .map(|i| l.name(i).unwrap_or_default().to_string())
                    .collect()
            }
            Err(_) => {
                let l = detection_common::labels::Labels::from_names(initial_labels.to_vec());
                (0..l.len())
                    .map(|i| l.name(i).unwrap_or_default().to_string())
                    .collect()
            }
        };
        let labels_path = root.join("labels.txt");
        if !labels_path.exists() {
            let text: String = labels.iter().map(|l| format!("{l}\n")).collect();
            write_atomically(&labels_path, text.as_bytes())
                .map_err(|e| format!("cannot write {}: {e}", labels_path.display()))?;
        }
        Ok(Self {
            root: root.to_path_buf(),
            next,
            labels,
            quality,
            bytes,
        })
    }

    pub fn next_index(&self) -> u64 {
        self.next
    }

    /// Adds labels seen on a frame; rewrites labels.txt when one is new. A class id whose label differs from
    /// the recorded one is an error (the dataset's ids would stop meaning anything).
    fn update_labels(&mut self, boxes: &[SavedBox]) -> Result<(), String> {
        let mut changed = false;
        for SavedBox { label, class_id, .. } in boxes {
            let id = *class_id as usize;
            if id == 0 {
                continue;
            }
            while self.labels.len() <= id {
                self.labels.push(format!("class-{}", self.labels.len()));
                changed = true;
            }
            if self.labels[id] != *label {
                if self.labels[id] == format!("class-{id}") {
                    self.labels[id] = label.clone();
                    changed = true;
                } else {
                    return Err(format!(
                        "class id {id} is '{label}' here but '{}' in {}",
                        self.labels[id],
                        self.root.join("labels.txt").display()
                    ));
                }
            }
        }
        if changed {
            let text: String = self.labels.iter().map(|l| format!("{l}\n")).collect();
            write_atomically(&self.root.join("labels.txt"), text.as_bytes())
                .map_err(|e| format!("cannot write {}: {e}", self.root.join("labels.txt").display()))?;
        }
        Ok(())
    }

    /// Encodes and writes one sample; on error nothing of it is left behind.
    pub fn write(&mut self, sample: &Sample) -> Result<u64, String> {
        self.update_labels(&sample.boxes)?;
        let id = format!("{PREFIX}{:06}", self.next);
        let (w, h) = (sample.info.width(), sample.info.height());
        let rgb = to_rgb(&sample.buffer, &sample.info)?;
        let mut jpeg = Vec::with_capacity((w * h / 4) as usize);
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, self.quality)
            .encode(&rgb, w, h, image::ExtendedColorType::Rgb8)
            .map_err(|e| format!("JPEG encoding failed: {e}"))?;
        let annotation = Annotation {
            filename: format!("{id}.jpg"),
            width: w,
            height: h,
            objects: sample
                .boxes
                .iter()
                .map(
                    |SavedBox {
                         label,
                         confidence,
                         rect: (x, y, bw, bh),
                         ..
                     }| VocObject {
                        name: label.clone(),
                        xmin: *x as f32,
                        ymin: *y as f32,
                        xmax: (*x + *bw) as f32,
                        ymax: (*y + *bh) as f32,
                        difficult: false,
                        confidence: *confidence,
                    },
                )
                .collect(),
        };
        let xml = write_annotation(&annotation);
        let jpg_path = self.root.join("JPEGImages").join(&annotation.filename);
        let xml_path = self.root.join("Annotations").join(format!("{id}.xml"));
        write_atomically(&jpg_path, &jpeg).map_err(|e| format!("cannot write {}: {e}", jpg_path.display()))?;
        if let Err(e) = write_atomically(&xml_path, xml.as_bytes()) {
            let _ = std::fs::remove_file(&jpg_path);
            return Err(format!("cannot write {}: {e}", xml_path.display()));
        }
        // The split follows the trainer's hash, so both agree without ImageSets too.
        let split = hash_split(&id);
        let sets = self.root.join("ImageSets/Main");
        for list in [
            "trainval.txt",
            if split == detection_common::voc::Split::Val {
                "val.txt"
            } else {
                "train.txt"
            },
        ] {
            let path = sets.join(list);
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .and_then(|mut f| writeln!(f, "{id}"))
                .map_err(|e| format!("cannot append to {}: {e}", path.display()))?;
        }
        let written = (jpeg.len() + xml.len()) as u64;
        self.bytes += written;
        self.next += 1;
        Ok(written)
    }
}

/// The frame as packed RGB, for the JPEG encoder.
fn to_rgb(buffer: &gst::Buffer, info: &gst_video::VideoInfo) -> Result<Vec<u8>, String> {
    let frame = gst_video::VideoFrameRef::from_buffer_ref_readable(buffer.as_ref(), info)
        .map_err(|_| "cannot map the frame".to_string())?;
    let (w, h) = (info.width() as usize, info.height() as usize);
    let mut rgb = vec![0u8; w * h * 3];
    let stride = |i: usize| info.stride()[i] as usize;
    let plane = |i: u32| frame.plane_data(i).map_err(|e| format!("cannot read plane {i}: {e}"));
    match crate::preprocess::rgb_offsets(info.format()) {
        None => {
            let nv12 = info.format() == VideoFormat::Nv12;
            let luma = plane(0)?;
            let (p1, p2) = if nv12 {
                (plane(1)?, plane(1)?)
            } else {
                (plane(1)?, plane(2)?)
            };
            let c = info.colorimetry();
            let matrix =
                crate::preprocess::YuvMatrix::new(c.matrix(), c.range() == gst_video::VideoColorRange::Range0_255);
            for y in 0..h {
                for x in 0..w {
                    let (u, v) = if nv12 {
                        let o = (y / 2) * stride(1) + (x / 2) * 2;
                        (p1[o], p1[o + 1])
                    } else {
                        (p1[(y / 2) * stride(1) + x / 2], p2[(y / 2) * stride(2) + x / 2])
                    };
                    let o = (y * w + x) * 3;
                    rgb[o..o + 3].copy_from_slice(&matrix.rgb(luma[y * stride(0) + x], u, v));
                }
            }
        }
        Some((bpp, offsets)) => {
            let data = plane(0)?;
            for y in 0..h {
                let row = &data[y * stride(0)..y * stride(0) + w * bpp];
                for (x, p) in row.chunks_exact(bpp).enumerate() {
                    let o = (y * w + x) * 3;
                    rgb[o] = p[offsets[0]];
                    rgb[o + 1] = p[offsets[1]];
                    rgb[o + 2] = p[offsets[2]];
                }
            }
        }
    }
    Ok(rgb)
}
