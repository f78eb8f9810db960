//! `eval`: accuracy of a checkpoint (burn) or an exported ONNX model (ONNX Runtime, decoded by the element's own
//! code) on a dataset: VOC mAP@0.5 (all-point), COCO-style mAP@[.5:.95], per-class AP and PR curves.
//! Both paths share the image sampling, score threshold and NMS, so a checkpoint and its export score the same.

use crate::augment::{AugmentConfig, Rng, prepare, stretch_planes};
use crate::checkpoint;
use crate::data::{Decoded, decode};
use crate::model::{SsdLite, SsdLiteConfig};
use burn::module::Module;
use burn::tensor::activation::softmax;
use burn::tensor::{Device, Tensor, TensorData};
use detection_common::Detection;
use detection_common::boxes::{Anchor, BoxEncoding, decode_box};
use detection_common::labels::Labels;
use detection_common::map::{ClassResult, GroundTruth, Prediction, coco_map, evaluate};
use detection_common::metadata::{ChannelOrder, InputLayout};
use detection_common::mot::MotMetrics;
use detection_common::nms::{nms_in_place, push_candidate};
use detection_common::voc::Sample;
use detection_inference::preprocess::TensorType;
use detection_inference::{ClassGate, Model, ModelOptions, PostProcess};
use std::path::Path;

/// Detections below this score are not considered (the usual mAP protocol keeps nearly everything).
pub const SCORE_THRESHOLD: f32 = 0.01;
pub const NMS_IOU: f32 = 0.45;
pub const MAX_DETECTIONS: usize = 100;

/// A model to evaluate.
#[allow(clippy::large_enum_variant)] // one per evaluation: size does not matter
pub enum Detector {
    Checkpoint {
        model: SsdLite,
        config: SsdLiteConfig,
        anchors: Vec<Anchor>,
        labels: Labels,
        device: Device,
    },
    Onnx(Box<Model>),
}

impl Detector {
    /// A `.onnx` file goes through ONNX Runtime; anything else is read as a burnpack checkpoint, run on `device`.
    pub fn open(path: &Path, device: &Device) -> Result<Self, String> {
        if path.extension().is_some_and(|e| e.eq_ignore_ascii_case("onnx")) {
            let model = Model::load(&ModelOptions {
                path: path.to_path_buf(),
                threads: 2,
                ..Default::default()
            })
            .map_err(|e| e.to_string())?;
            return Ok(Detector::Onnx(Box::new(model)));
        }
        let (model, info) = checkpoint::load(path, device)?;
        Ok(Self::from_model(model.valid(), info.config, info.labels, device))
    }

    pub fn from_model(model: SsdLite, config: SsdLiteConfig, labels: Labels, device: &Device) -> Self {
        Detector::Checkpoint {
            anchors: config.anchors(),
            model,
            config,
            labels,
            device: device.clone(),
        }
    }

    pub fn labels(&self) -> &Labels {
        match self {
            Detector::Checkpoint { labels, .. } => labels,
            Detector::Onnx(m) => &m.labels,
        }
    }

    /// Detections (normalised boxes) on each image, after the score threshold and NMS.
    pub fn detect(&mut self, images: &[Decoded]) -> Result<Vec<Vec<Detection>>, String> {
        match self {
            Detector::Checkpoint {
                model,
                config,
                anchors,
                device,
                ..
            } => {
                let size = config.input_size;
                let mut pixels = Vec::with_capacity(images.len() * 3 * size * size);
                for d in images {
                    pixels.extend(prepare(&d.source(), size, &AugmentConfig::none(), &mut Rng::new(0)).pixels);
                }
                let x = Tensor::<4>::from_data(TensorData::new(pixels, [images.len(), 3, size, size]), &*device);
                let (enc, logits) = model.forward(x);
                let enc: Vec<f32> = enc.into_data().try_to_vec::<f32>().map_err(|e| format!("{e:?}"))?;
                let scores: Vec<f32> = softmax(logits, 2)
                    .into_data()
                    .try_to_vec::<f32>()
                    .map_err(|e| format!("{e:?}"))?;
                let (a, c) = (anchors.len(), config.num_classes);
                Ok((0..images.len())
                    .map(|b| {
                        let mut dets = Vec::new();
                        for (i, anchor) in anchors.iter().enumerate() {
                            let row = &scores[(b * a + i) * c..(b * a + i + 1) * c];
                            for (k, &s) in row.iter().enumerate().skip(1) {
                                if s >= SCORE_THRESHOLD {
                                    let e = &enc[(b * a + i) * 4..(b * a + i) * 4 + 4];
                                    // The same candidate rules as the element's decoders (clipped boxes).
                                    push_candidate(&mut dets, k, s, decode_box(e, anchor, BoxEncoding::Tf));
                                }
                            }
                        }
                        nms_in_place(&mut dets, NMS_IOU, MAX_DETECTIONS);
                        dets
                    })
                    .collect())
            }
            Detector::Onnx(model) => {
                let post = PostProcess {
                    gate: ClassGate::new(SCORE_THRESHOLD, "", "", &model.labels)?,
                    iou_threshold: NMS_IOU,
                    max_detections: MAX_DETECTIONS,
                };
                let mut all = Vec::with_capacity(images.len());
                for d in images {
                    let spec = model.input.tensor_spec(d.width as u32, d.height as u32);
                    let (w, h) = (spec.width as usize, spec.height as usize);
                    let planes = stretch_planes(&d.source(), w, h);
                    let plane = w * h;
                    let order = match spec.channel_order {
                        ChannelOrder::Rgb => [0, 1, 2],
                        ChannelOrder::Bgr => [2, 1, 0],
                    };
                    let (mut f32s, mut u8s) = (Vec::new(), Vec::new());
                    for i in 0..plane * 3 {
                        // Tensor index i -> (channel, pixel) in the model's layout.
                        let (c, p) = match spec.layout {
                            InputLayout::Nchw => (i / plane, i % plane),
                            InputLayout::Nhwc => (i % 3, i / 3),
                        };
                        let v = planes[order[c] * plane + p];
                        match spec.dtype {
                            TensorType::F32 => f32s.push((v - spec.mean[c]) / spec.std[c]),
                            TensorType::U8 => u8s.push(v.round().clamp(0.0, 255.0) as u8),
                        }
                    }
                    let mut dets = Vec::new();
                    model.detect(&spec, &f32s, &u8s, &post, &mut dets)?;
                    all.push(dets);
                }
                Ok(all)
            }
        }
    }
}

/// One class's line in the report.
#[derive(Debug, Clone)]
pub struct ClassReport {
    pub label: String,
    pub ap50: f32,
    pub ap50_95: f32,
    pub objects: usize,
    pub detections: usize,
    pub curve: Vec<(f32, f32)>,
}

#[derive(Debug, Clone)]
pub struct Report {
    pub images: usize,
    pub map50: f32,
    pub map50_95: f32,
    pub classes: Vec<ClassReport>,
    /// Tracking accuracy, when both sides carry identities (`score` on logs with `track_id`).
    pub tracking: Option<MotMetrics>,
}

impl Report {
    pub fn table(&self) -> String {
        let mut out = format!(
            "{:<20} {:>8} {:>12} {:>8} {:>11}\n",
            "class", "AP@0.5", "AP@.5:.95", "objects", "detections"
        );
        for c in &self.classes {
            out += &format!(
                "{:<20} {:>8.3} {:>12.3} {:>8} {:>11}\n",
                c.label, c.ap50, c.ap50_95, c.objects, c.detections
            );
        }
        if let Some(t) = &self.tracking {
            out += &format!(
                "tracking: IDF1 {:.4}   MOTA {:.4}   ID switches {}   ({} objects, {} tracks; {} misses, {} false \
                 positives)\n",
                t.idf1, t.mota, t.id_switches, t.truth_ids, t.track_ids, t.misses, t.false_positives
            );
        }
        out += &format!(
            "mAP@0.5 {:.4}   mAP@[.5:.95] {:.4}   ({} images)\n",
            self.map50, self.map50_95, self.images
        );
        out
    }

    pub fn json(&self) -> String {
        let classes: Vec<serde_json::Value> = self
            .classes
            .iter()
            .map(|c| {
                serde_json::json!({
                    "label": c.label, "ap50": c.ap50, "ap50_95": c.ap50_95,
                    "objects": c.objects, "detections": c.detections,
                })
            })
            .collect();
        let mut v = serde_json::json!({
            "images": self.images, "map50": self.map50, "map50_95": self.map50_95, "classes": classes,
        });
        if let Some(t) = &self.tracking {
            v["tracking"] = serde_json::json!({
                "idf1": t.idf1, "mota": t.mota, "id_switches": t.id_switches, "misses": t.misses,
                "false_positives": t.false_positives, "objects": t.truth_ids, "tracks": t.track_ids,
            });
        }
        v.to_string()
    }
}

/// Runs `detector` over `samples` (8 images at a time) and scores it against their annotations. Dataset classes
/// are matched to the model's by name; a class the model does not know is an error.
pub fn evaluate_samples(
    detector: &mut Detector,
    samples: &[Sample],
    dataset_labels: &Labels,
) -> Result<Report, String> {
    let model_labels = detector.labels().clone();
    let mut to_model = vec![None; dataset_labels.len()];
    for (id, name) in dataset_labels.foreground().iter().enumerate() {
        to_model[id + 1] = model_labels.id_of(name);
    }
    let (mut gts, mut preds) = (Vec::new(), Vec::new());
    let mut image = 0;
    for chunk in samples.chunks(8) {
        let decoded: Vec<Decoded> = chunk
            .iter()
            .map(|s| decode(s, dataset_labels))
            .collect::<Result<_, _>>()?;
        let dets = detector.detect(&decoded)?;
        for (d, (dets, sample)) in decoded.iter().zip(dets.into_iter().zip(chunk)) {
            let (w, h) = (d.width as f32, d.height as f32);
            for (t, &difficult) in d.targets.iter().zip(&d.difficult) {
                let class_id = to_model[t.class_id].ok_or_else(|| {
                    format!(
                        "{}: class '{}' is not one of the model's ({})",
                        sample.image.display(),
                        dataset_labels.name(t.class_id).unwrap_or("?"),
                        model_labels.foreground().join(", ")
                    )
                })?;
                gts.push(GroundTruth {
                    image,
                    class_id: class_id as u32,
                    bbox: detection_common::BBox::new(t.bbox.x0 / w, t.bbox.y0 / h, t.bbox.x1 / w, t.bbox.y1 / h),
                    difficult,
                });
            }
            preds.extend(dets.into_iter().map(|p| Prediction {
                image,
                class_id: p.class_id,
                score: p.score,
                bbox: p.bbox,
            }));
            image += 1;
        }
    }
    Ok(report(&gts, &preds, &model_labels, image))
}

/// Scores predictions against ground truth (normalised boxes, model class ids).
pub fn report(gts: &[GroundTruth], preds: &[Prediction], labels: &Labels, images: usize) -> Report {
    let voc = evaluate(gts, preds, 0.5);
    let mut classes = Vec::new();
    for (&id, c) in &voc.classes {
        let ClassResult {
            ap,
            ground_truths,
            predictions,
            curve,
        } = c.clone();
        let own_gts: Vec<GroundTruth> = gts.iter().filter(|g| g.class_id == id).copied().collect();
        let own_preds: Vec<Prediction> = preds.iter().filter(|p| p.class_id == id).copied().collect();
        classes.push(ClassReport {
            label: labels.name(id as usize).unwrap_or("?").to_string(),
            ap50: ap,
            ap50_95: coco_map(&own_gts, &own_preds),
            objects: ground_truths,
            detections: predictions,
            curve,
        });
    }
    Report {
        images,
        map50: voc.map,
        map50_95: coco_map(gts, preds),
        classes,
        tracking: None,
    }
}
