//! Checkpoints: the model's weights in burn's burnpack format, with what is needed to rebuild it (labels, width,
//! input size, epoch) in the file's metadata, so `eval`, `export` and `train --init` need only the file.
//! The optimizer's state sits beside it (`optimizer.bpk`) so `--resume` continues with the same moments.

use crate::model::{SsdLite, SsdLiteConfig, Variant};
use crate::snapshot::KEY_SNAPSHOT;
use burn::module::Module;
use burn::store::burn_pack::Reader;
use burn::store::{BurnpackStore, ModuleSnapshot};
use burn::tensor::Device;
use detection_common::files::write_atomically_with;
use detection_common::labels::Labels;
use std::path::Path;

const KEY_LABELS: &str = "mobilenetdetect.labels";
const KEY_WIDTH: &str = "mobilenetdetect.width";
const KEY_INPUT_SIZE: &str = "mobilenetdetect.input_size";
const KEY_EPOCH: &str = "mobilenetdetect.epoch";
/// Fitted anchor shapes (absent: SSD's, as in checkpoints from before fitting).
const KEY_ANCHOR_SHAPES: &str = "mobilenetdetect.anchor_shapes";
/// Absent: the trainer's own layout (every checkpoint from before imported TensorFlow models).
const KEY_VARIANT: &str = "mobilenetdetect.variant";

/// What a checkpoint says about itself.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckpointInfo {
    pub config: SsdLiteConfig,
    pub labels: Labels,
    /// The last epoch trained (0-based).
    pub epoch: usize,
    /// The id of the dataset snapshot it was trained on (`snapshot.rs`), when known.
    pub dataset_snapshot: Option<String>,
}

impl CheckpointInfo {
    /// A model read from an ONNX file: not trained here yet, on no known snapshot.
    pub fn imported(config: SsdLiteConfig, labels: Labels) -> Self {
        Self {
            config,
            labels,
            epoch: 0,
            dataset_snapshot: None,
        }
    }
}

/// Writes `model` to `path` atomically: a crash mid-write keeps the old file.
pub fn save(model: &SsdLite, info: &CheckpointInfo, path: &Path) -> Result<(), String> {
    write_atomically_with(path, |staged| {
        let mut store = BurnpackStore::from_file(staged)
            .overwrite(true)
            .auto_extension(false)
            .metadata(KEY_LABELS, info.labels.foreground().join("\n"))
            .metadata(KEY_WIDTH, info.config.width.to_string())
            .metadata(KEY_INPUT_SIZE, info.config.input_size.to_string())
            .metadata(KEY_EPOCH, info.epoch.to_string());
        if let Some(shapes) = info.config.shapes_to_text() {
            store = store.metadata(KEY_ANCHOR_SHAPES, shapes);
        }
        if info.config.variant != Variant::Trainer {
            store = store.metadata(KEY_VARIANT, info.config.variant.name());
        }
        if let Some(id) = &info.dataset_snapshot {
            store = store.metadata(KEY_SNAPSHOT, id.clone());
        }
        model.save_into(&mut store).map_err(|e| format!("{e}"))
    })
    .map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// Reads a checkpoint's metadata without loading its weights.
pub fn info(path: &Path) -> Result<CheckpointInfo, String> {
    let reader = std::panic::catch_unwind(|| Reader::from_file(path))
        .map_err(|_| format!("{}: damaged checkpoint (unreadable header)", path.display()))?;
    let reader = reader.map_err(|e| format!("{}: not a burnpack checkpoint: {e}", path.display()))?;
    let meta = reader.metadata();
    let get = |key: &str| {
        meta.get(key)
            .ok_or_else(|| format!("{}: not a mobilenet-trainer checkpoint (no {key})", path.display()))
    };
    let number = |key: &str| -> Result<f64, String> {
        get(key)?
            .parse::<f64>()
            .map_err(|_| format!("{}: metadata {key} is not a number", path.display()))
    };
    let labels = Labels::parse(get(KEY_LABELS)?);
    if labels.len() < 2 {
        return Err(format!("{}: the checkpoint names no classes", path.display()));
    }
    let variant = match meta.get(KEY_VARIANT) {
        None => Variant::Trainer,
        Some(name) => Variant::parse(name)
            .ok_or_else(|| format!("{}: damaged checkpoint metadata: variant '{name}'", path.display()))?,
    };
    let config = SsdLiteConfig {
        num_classes: labels.len(),
        width: number(KEY_WIDTH)? as f32,
        // `as` saturates: a negative, NaN or huge number lands outside the checked range.
        input_size: number(KEY_INPUT_SIZE)? as usize,
        anchor_shapes: meta
            .get(KEY_ANCHOR_SHAPES)
            .map(|text| SsdLiteConfig::shapes_from_text(text, variant.anchors_per_location()))
            .transpose()
            .map_err(|e| format!("{}: damaged checkpoint metadata: {e}", path.display()))?,
        variant,
    };
    config
        .check()
        .map_err(|e| format!("{}: damaged checkpoint metadata: {e}", path.display()))?;
    let epoch = number(KEY_EPOCH)?;
    if !(0.0..=MAX_EPOCH).contains(&epoch) {
        return Err(format!(
            "{}: damaged checkpoint metadata: epoch {epoch}",
            path.display()
        ));
    }
    Ok(CheckpointInfo {
        config,
        labels,
        epoch: epoch as usize,
        dataset_snapshot: meta.get(KEY_SNAPSHOT).cloned(),
    })
}

/// More epochs than any run has: a larger number in a checkpoint is damage.
const MAX_EPOCH: f64 = 1e6;

/// Loads a checkpoint into a fresh model on `device`.
pub fn load(path: &Path, device: &Device) -> Result<(SsdLite, CheckpointInfo), String> {
    let info = info(path)?;
    let mut model = info.config.init(device);
    load_into(&mut model, path)?;
    Ok((model, info))
}

/// Loads a checkpoint's weights into `model` (same architecture); every tensor must be there.
pub fn load_into(model: &mut SsdLite, path: &Path) -> Result<(), String> {
    let mut store = BurnpackStore::from_file(path).auto_extension(false);
    // A damaged file must end in an error naming it, even where the reader itself would give up with a panic.
    let loaded = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| model.load_from(&mut store)))
        .map_err(|_| format!("{}: damaged checkpoint (its tensors cannot be read)", path.display()))?;
    let result = loaded.map_err(|e| format!("{}: cannot load the checkpoint: {e}", path.display()))?;
    if let Some(e) = result.errors.first() {
        return Err(format!("{}: {e}", path.display()));
    }
    if let Some((p, _)) = result.missing.first() {
        return Err(format!("{}: tensor {p} is missing", path.display()));
    }
    Ok(())
}

/// Parameter count, for the training banner.
pub fn parameters(model: &SsdLite) -> usize {
    model.num_params()
}
