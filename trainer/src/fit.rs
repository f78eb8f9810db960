//! `train`: the training driver. Loads the merged datasets, decodes and augments images on a worker thread,
//! runs AdamW with warmup + cosine decay, evaluates VOC mAP@0.5 on the validation split after every epoch,
//! and writes (atomically) the last checkpoint, the best model as ONNX and a metrics CSV.

use crate::data::Merged;
use crate::export::{INPUT_MEAN, INPUT_STD, export_onnx};
use crate::loss::{Target, anchor_corners, batch_targets};
use crate::model::{SsdLite, SsdLiteConfig};
use crate::train::{learning_rate, train_step};
use burn::module::Module;
use burn::optim::AdamWConfig;
use burn::store::{BurnpackStore, ModuleSnapshot};
use burn::tensor::activation::softmax;
use burn::tensor::{Device, Tensor, TensorData};
use detection_common::boxes::{BoxEncoding, decode_box};
use detection_common::map::{GroundTruth, Prediction, evaluate};
use detection_common::nms::nms_in_place;
use detection_common::voc::{Sample, Split};
use detection_common::{BBox, Detection};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

#[derive(Debug, Clone)]
pub struct FitOptions {
    pub out: PathBuf,
    pub epochs: usize,
    pub batch_size: usize,
    pub input_size: usize,
    pub width: f32,
    pub lr: f64,
    pub warmup_steps: usize,
    pub seed: u64,
    pub resume: bool,
    /// Stop after this many epochs without a better validation mAP (0: never).
    pub patience: usize,
}

/// A decoded, resized and normalised image with its targets.
struct Prepared {
    pixels: Vec<f32>,
    targets: Vec<Target>,
}

fn prepare(sample: &Sample, merged: &Merged, size: usize, flip: bool) -> Result<Prepared, String> {
    let img = image::open(&sample.image)
        .map_err(|e| format!("{}: {e}", sample.image.display()))?
        .to_rgb8();
    let (w, h) = (img.width() as f32, img.height() as f32);
    let resized = image::imageops::resize(&img, size as u32, size as u32, image::imageops::FilterType::Triangle);
    let mut pixels = vec![0f32; 3 * size * size];
    for (x, y, p) in resized.enumerate_pixels() {
        let x = if flip { size - 1 - x as usize } else { x as usize };
        for c in 0..3 {
            pixels[c * size * size + y as usize * size + x] = (p[c] as f32 - INPUT_MEAN[c]) / INPUT_STD[c];
        }
    }
    let targets = sample
        .annotation
        .objects
        .iter()
        .filter_map(|o| {
            let class_id = merged.labels.id_of(&o.name)?;
            let (mut x0, mut x1) = (o.xmin / w, o.xmax / w);
            if flip {
                (x0, x1) = (1.0 - x1, 1.0 - x0);
            }
            Some(Target {
                bbox: BBox::new(x0, o.ymin / h, x1, o.ymax / h).clamp(0.0, 1.0, 1.0),
                class_id,
            })
        })
        .collect();
    Ok(Prepared { pixels, targets })
}

/// Decodes batches on a worker thread, so the model never waits on JPEG decoding.
fn batches(
    samples: Vec<Sample>,
    merged: &Merged,
    size: usize,
    batch: usize,
    seed: u64,
    augment: bool,
) -> std::sync::mpsc::Receiver<Result<Vec<Prepared>, String>> {
    let (tx, rx) = std::sync::mpsc::sync_channel(2);
    let merged = Merged {
        labels: merged.labels.clone(),
        ..Default::default()
    };
    std::thread::spawn(move || {
        let mut state = seed | 1;
        let mut rnd = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let mut order: Vec<usize> = (0..samples.len()).collect();
        if augment {
            for i in (1..order.len()).rev() {
                order.swap(i, rnd() as usize % (i + 1));
            }
        }
        for chunk in order.chunks(batch) {
            let prepared: Result<Vec<Prepared>, String> = chunk
                .iter()
                .map(|&i| prepare(&samples[i], &merged, size, augment && rnd() % 2 == 0))
                .collect();
            if tx.send(prepared).is_err() {
                return;
            }
        }
    });
    rx
}

fn to_tensor(batch: &[Prepared], size: usize, device: &Device) -> Tensor<4> {
    let pixels: Vec<f32> = batch.iter().flat_map(|p| p.pixels.iter().copied()).collect();
    Tensor::from_data(TensorData::new(pixels, [batch.len(), 3, size, size]), device)
}

/// VOC mAP@0.5 of `model` on `samples`.
pub fn validate(model: &SsdLite, cfg: &SsdLiteConfig, merged: &Merged, samples: &[Sample]) -> Result<f32, String> {
    let device = Device::flex();
    let anchors = cfg.anchors();
    let (mut gts, mut preds) = (Vec::new(), Vec::new());
    let mut image = 0;
    for batch in batches(samples.to_vec(), merged, cfg.input_size, 8, 0, false) {
        let batch = batch?;
        let (enc, logits) = model.forward(to_tensor(&batch, cfg.input_size, &device));
        let enc: Vec<f32> = enc.into_data().try_to_vec::<f32>().map_err(|e| format!("{e:?}"))?;
        let scores: Vec<f32> = softmax(logits, 2)
            .into_data()
            .try_to_vec::<f32>()
            .map_err(|e| format!("{e:?}"))?;
        let (a, c) = (anchors.len(), cfg.num_classes);
        for (b, p) in batch.iter().enumerate() {
            for t in &p.targets {
                gts.push(GroundTruth {
                    image,
                    class_id: t.class_id as u32,
                    bbox: t.bbox,
                    difficult: false,
                });
            }
            let mut dets = Vec::new();
            for (i, anchor) in anchors.iter().enumerate() {
                let row = &scores[(b * a + i) * c..(b * a + i + 1) * c];
                for (k, &s) in row.iter().enumerate().skip(1) {
                    if s >= 0.01 {
                        let e = &enc[(b * a + i) * 4..(b * a + i) * 4 + 4];
                        dets.push(Detection {
                            class_id: k as u32,
                            score: s,
                            bbox: decode_box(e, anchor, BoxEncoding::Tf),
                        });
                    }
                }
            }
            nms_in_place(&mut dets, 0.45, 100);
            preds.extend(dets.into_iter().map(|d| Prediction {
                image,
                class_id: d.class_id,
                score: d.score,
                bbox: d.bbox,
            }));
            image += 1;
        }
    }
    Ok(evaluate(&gts, &preds, 0.5).map)
}

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), String> {
    detection_common::onnx::write_atomically(path, bytes).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

pub fn fit(merged: &Merged, opts: &FitOptions) -> Result<(), String> {
    std::fs::create_dir_all(&opts.out).map_err(|e| format!("cannot create {}: {e}", opts.out.display()))?;
    let train: Vec<Sample> = merged
        .samples
        .iter()
        .filter(|s| s.split == Split::Train)
        .cloned()
        .collect();
    let mut val: Vec<Sample> = merged
        .samples
        .iter()
        .filter(|s| s.split == Split::Val)
        .cloned()
        .collect();
    if train.is_empty() {
        return Err("no training images".into());
    }
    if val.is_empty() {
        eprintln!("warning: no validation images; validating on the training split");
        val = train.clone();
    }
    let cfg = SsdLiteConfig {
        num_classes: merged.labels.len(),
        width: opts.width,
        input_size: opts.input_size,
    };
    let device = Device::flex().autodiff();
    let mut model = cfg.init(&device);
    let checkpoint = opts.out.join("checkpoint.bpk");
    let metrics_path = opts.out.join("metrics.csv");
    let mut first_epoch = 0;
    let mut best = (-1f32, 0usize);
    if opts.resume && checkpoint.exists() {
        let mut store = BurnpackStore::from_file(&checkpoint).auto_extension(false);
        model
            .load_from(&mut store)
            .map_err(|e| format!("cannot resume from {}: {e}", checkpoint.display()))?;
        let text = std::fs::read_to_string(&metrics_path).unwrap_or_default();
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split(',').collect();
            if let (Some(e), Some(m)) = (
                f.first().and_then(|v| v.parse::<usize>().ok()),
                f.get(2).and_then(|v| v.parse::<f32>().ok()),
            ) {
                first_epoch = e + 1;
                if m > best.0 {
                    best = (m, e);
                }
            }
        }
        eprintln!(
            "resuming after epoch {first_epoch} (best val mAP {:.3})",
            best.0.max(0.0)
        );
    } else {
        write_atomic(&metrics_path, b"epoch,train_loss,val_map50,lr,seconds\n")?;
    }
    let anchors = cfg.anchors();
    let corners = anchor_corners(&anchors);
    let steps_per_epoch = train.len().div_ceil(opts.batch_size);
    let total_steps = steps_per_epoch * opts.epochs;
    let mut optimizer = AdamWConfig::new().with_weight_decay(1e-4).init();
    for epoch in first_epoch..opts.epochs {
        let started = Instant::now();
        let (mut loss_sum, mut seen) = (0f64, 0usize);
        let mut lr = opts.lr;
        for (i, batch) in batches(
            train.clone(),
            merged,
            cfg.input_size,
            opts.batch_size,
            opts.seed ^ epoch as u64,
            true,
        )
        .into_iter()
        .enumerate()
        {
            let batch = batch?;
            let step = epoch * steps_per_epoch + i;
            lr = learning_rate(step, total_steps, opts.warmup_steps, opts.lr, 0.02);
            let targets: Vec<Vec<Target>> = batch.iter().map(|p| p.targets.clone()).collect();
            let bt = batch_targets(&anchors, &corners, &targets, &device);
            let (m, loss) = train_step(
                model,
                &mut optimizer,
                lr,
                to_tensor(&batch, cfg.input_size, &device),
                &bt,
            );
            model = m;
            loss_sum += loss.total as f64 * batch.len() as f64;
            seen += batch.len();
            let elapsed = started.elapsed().as_secs_f64();
            let rate = seen as f64 / elapsed.max(1e-9);
            let eta = (train.len() - seen.min(train.len())) as f64 / rate.max(1e-9);
            eprint!(
                "\repoch {}/{} [{:>5}/{:<5}] loss {:.4} | {:.1} images/s | ETA {:.0}s   ",
                epoch + 1,
                opts.epochs,
                seen,
                train.len(),
                loss_sum / seen as f64,
                rate,
                eta
            );
        }
        eprintln!();
        let valid = model.valid();
        let map = validate(&valid, &cfg, merged, &val)?;
        let secs = started.elapsed().as_secs_f64();
        eprintln!(
            "epoch {}: train loss {:.4}, val mAP@0.5 {:.3} ({secs:.0}s)",
            epoch + 1,
            loss_sum / seen as f64,
            map
        );
        // The checkpoint goes to a temporary name first: a crash mid-write keeps the previous one.
        let staged = opts.out.join(".checkpoint.bpk.tmp");
        let mut store = BurnpackStore::from_file(&staged).overwrite(true).auto_extension(false);
        valid
            .save_into(&mut store)
            .map_err(|e| format!("cannot write {}: {e}", staged.display()))?;
        std::fs::rename(&staged, &checkpoint).map_err(|e| format!("cannot write {}: {e}", checkpoint.display()))?;
        if map > best.0 {
            best = (map, epoch);
            write_atomic(&opts.out.join("model.onnx"), &export_onnx(&valid, &cfg, &merged.labels))?;
        }
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&metrics_path)
            .map_err(|e| format!("cannot append to {}: {e}", metrics_path.display()))?;
        writeln!(f, "{epoch},{:.5},{map:.5},{lr:.6},{secs:.1}", loss_sum / seen as f64).map_err(|e| e.to_string())?;
        if opts.patience > 0 && epoch >= best.1 + opts.patience {
            eprintln!("early stop: no better validation mAP for {} epochs", opts.patience);
            break;
        }
    }
    eprintln!(
        "best val mAP@0.5 {:.3} (epoch {}); model: {}",
        best.0,
        best.1 + 1,
        opts.out.join("model.onnx").display()
    );
    Ok(())
}
