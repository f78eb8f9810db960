//! The fleet's side of training: datasets pooled in object storage (`--data s3://bucket/prefix`, as
//! `detectioncapture location=s3://…` writes them from many devices) read through a local mirror, and models
//! published back for the devices to pick up.

use crate::compare::{Gate, admit};
use crate::review::Publish;
use detection_common::labels::{Labels, names_to_text};
use detection_common::release::{MANIFEST_NAME, Manifest};
use detection_storage::mirror::{mirror_prefix, write_whole};
use detection_storage::{Bucket, ErrorKind, Overrides, S3Url};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Where pooled datasets are mirrored: `$XDG_CACHE_HOME/mobilenetdetect/datasets/BUCKET/PREFIX`.
pub fn mirror_dir(url: &S3Url) -> PathBuf {
    std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir)
        .join("mobilenetdetect/datasets")
        .join(&url.bucket)
        .join(if url.key.is_empty() { "_root" } else { &url.key })
}

/// Each `--data`: a local folder as it is; an s3:// prefix mirrored into the cache (only objects whose ETag
/// changed are downloaded) and replaced by the mirror's folder.
pub fn resolve_data(data: &[PathBuf]) -> Result<Vec<PathBuf>, String> {
    data.iter()
        .map(|d| {
            let text = d.to_string_lossy();
            if detection_storage::is_s3(&text) {
                let url = S3Url::parse(&text).map_err(|e| e.to_string())?;
                mirror_dataset(&url, &mirror_dir(&url))
            } else {
                Ok(d.clone())
            }
        })
        .collect()
}

/// Mirrors a pooled dataset into `dir` and writes its merged labels.txt; returns `dir`.
pub fn mirror_dataset(url: &S3Url, dir: &Path) -> Result<PathBuf, String> {
    let bucket = Bucket::open_url(url, &Overrides::default()).map_err(|e| e.to_string())?;
    eprintln!("dataset {url}: listing at {}", bucket.endpoint);
    let started = Instant::now();
    let mut last_report = Instant::now();
    let wanted = |rel: &str| {
        let under = |folder: &str| rel.strip_prefix(folder).is_some_and(|r| !r.contains('/'));
        under("Annotations/") || under("JPEGImages/") || under("labels/") || rel == "labels.txt"
    };
    let report = mirror_prefix(&bucket, &url.key, dir, wanted, |done, total| {
        // A line every few seconds, so a long first download is never silent (and logs stay short).
        if last_report.elapsed() >= Duration::from_secs(3) || done == total {
            eprintln!("dataset {url}: downloaded {done}/{total}");
            last_report = Instant::now();
        }
    })
    .map_err(|e| {
        let hint = if e.kind == ErrorKind::NotFound {
            " (does the bucket exist?)"
        } else {
            ""
        };
        format!("{e}{hint}")
    })?;
    eprintln!(
        "dataset {url}: {} objects, {} downloaded ({:.1} MB) in {:.1} s, {} unchanged (cached in {}), {} removed",
        report.listed,
        report.downloaded,
        report.downloaded_bytes as f64 / 1e6,
        started.elapsed().as_secs_f64(),
        report.unchanged,
        dir.display(),
        report.removed
    );
    let labels = merged_labels(dir)?;
    write_whole(&dir.join("labels.txt"), names_to_text(&labels).as_bytes()).map_err(|e| e.to_string())?;
    Ok(dir.to_path_buf())
}

/// One label list from every device's `labels/DEVICE.txt` (and a shared `labels.txt` uploaded with the
/// dataset, if any), in name order. Lists must agree on every class id they share; a placeholder (`class-N`)
/// takes the real name from another list. A disagreement names both files.
pub fn merged_labels(dir: &Path) -> Result<Vec<String>, String> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir.join("labels"))
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "txt"))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    // A mirror from an earlier run wrote labels.txt itself; only the devices' lists count then.
    if files.is_empty() && dir.join("labels.txt").is_file() {
        files.push(dir.join("labels.txt"));
    }
    let placeholder = |i: usize, name: &str| name == format!("class-{i}");
    let mut merged: Vec<String> = Vec::new();
    let mut source: Vec<PathBuf> = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).map_err(|e| format!("cannot read {}: {e}", file.display()))?;
        let names = Labels::parse(&text).names().to_vec();
        for (i, name) in names.iter().enumerate() {
            match merged.get(i) {
                None => {
                    merged.push(name.clone());
                    source.push(file.clone());
                }
                Some(have) if have == name || placeholder(i, name) => {}
                Some(have) if placeholder(i, have) => {
                    merged[i] = name.clone();
                    source[i] = file.clone();
                }
                Some(have) => {
                    return Err(format!(
                        "class id {i} is '{name}' in {} but '{have}' in {}: the devices' label lists must agree \
                         (start every device with the same labels= list)",
                        file.display(),
                        source[i].display()
                    ));
                }
            }
        }
    }
    if merged.is_empty() {
        return Err(format!(
            "{}: no labels/DEVICE.txt or labels.txt: is this a detectioncapture dataset?",
            dir.display()
        ));
    }
    Ok(merged)
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian (Howard Hinnant's civil_from_days).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// `YYYYMMDDTHHMMSSZ` for a Unix time in seconds.
fn utc_stamp(secs: u64) -> String {
    let (y, mo, d) = civil_from_days((secs / 86_400) as i64);
    let s = secs % 86_400;
    format!("{y:04}{mo:02}{d:02}T{:02}{:02}{:02}Z", s / 3600, s / 60 % 60, s % 60)
}

/// What `publish` put where.
pub struct Published {
    pub versioned: String,
    pub latest: String,
    pub bytes: u64,
    /// The release manifest and what it now says.
    pub manifest: String,
    pub release: Manifest,
}

/// A release to a share of the fleet first (`publish --canary`).
#[derive(Debug, Clone, Copy)]
pub struct Canary {
    pub percent: u32,
    pub shadow_every: u32,
}

/// Uploads `model` as `PREFIX/model-TIMESTAMP.onnx` and checks it arrived whole. Released to every device, it
/// becomes the stable model of `PREFIX/release.json` and `PREFIX/latest.onnx` is pointed at it with a
/// server-side copy (a reader gets the previous model or the new one, never a part); released to `canary`, it
/// becomes the manifest's candidate and latest.onnx stays. First the model must pass `gate` against the
/// current latest.onnx (the first model of a prefix passes).
pub fn publish(model: &Path, to: &S3Url, gate: &Gate, canary: Option<Canary>) -> Result<Published, String> {
    let bytes = std::fs::read(model).map_err(|e| format!("cannot read {}: {e}", model.display()))?;
    // Only a model the element can load is published (a truncated export would break every device's swap).
    let proto = <detection_common::onnx::ModelProto as prost::Message>::decode(bytes.as_slice())
        .map_err(|e| format!("{}: not an ONNX model ({e}); nothing published", model.display()))?;
    if proto.graph.is_none() {
        return Err(format!(
            "{}: an ONNX file without a graph; nothing published",
            model.display()
        ));
    }
    let bucket = Bucket::open_url(to, &Overrides::default()).map_err(|e| e.to_string())?;
    let latest = to.child("latest.onnx");
    let manifest = crate::rollout::read_manifest(&bucket, to)?;
    let mut first = false;
    match bucket.get(&latest) {
        Ok((current, _)) => {
            // ONNX Runtime loads from a file; a private name per process, removed whatever the verdict.
            let local = std::env::temp_dir().join(format!("mobilenet-trainer-latest-{}.onnx", std::process::id()));
            std::fs::write(&local, current).map_err(|e| format!("cannot write {}: {e}", local.display()))?;
            let verdict = admit(model, &local, &bucket.url(&latest), gate);
            let _ = std::fs::remove_file(&local);
            verdict.map_err(|e| format!("{e}; nothing published"))?;
        }
        Err(e) if e.kind == ErrorKind::NotFound => {
            eprintln!("{} does not exist yet: publishing the first model", bucket.url(&latest));
            first = true;
        }
        Err(e) => return Err(format!("{e}; nothing published")),
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let size = bytes.len() as u64;
    // A second publish within the same second gets its own name too.
    let mut versioned = to.child(&format!("model-{}.onnx", utc_stamp(now)));
    let mut n = 1;
    while bucket.head(&versioned).map_err(|e| e.to_string())?.is_some() {
        n += 1;
        versioned = to.child(&format!("model-{}-{n}.onnx", utc_stamp(now)));
    }
    bucket.put(&versioned, bytes).map_err(|e| e.to_string())?;
    match bucket.head(&versioned).map_err(|e| e.to_string())? {
        Some(o) if o.size == size => {}
        other => {
            return Err(format!(
                "{}: stored {} bytes of {size}; latest.onnx left as it was",
                bucket.url(&versioned),
                other.map(|o| o.size).unwrap_or(0)
            ));
        }
    }
    let name = versioned.rsplit('/').next().unwrap_or(&versioned).to_string();
    let release = match (canary, manifest) {
        (Some(c), _) if first => {
            eprintln!(
                "no model runs on the fleet yet: {name} goes to every device (--canary {} needs a stable model)",
                c.percent
            );
            bucket.copy(&versioned, &latest).map_err(|e| e.to_string())?;
            Manifest::stable_only(&name)
        }
        (Some(c), current) => {
            // Fleets published to before manifests existed run latest.onnx: that stays their stable model.
            let current = current.unwrap_or_else(|| Manifest::stable_only("latest.onnx"));
            if let Some(replaced) = &current.candidate {
                eprintln!("replacing the candidate {replaced} (never promoted)");
            }
            Manifest {
                candidate: Some(name),
                canary_percent: c.percent,
                shadow_every: c.shadow_every,
                ..current
            }
        }
        (None, current) => {
            bucket.copy(&versioned, &latest).map_err(|e| e.to_string())?;
            let base = current.unwrap_or_else(|| Manifest::stable_only(&name));
            Manifest {
                stable: name,
                candidate: None,
                ..base
            }
        }
    };
    crate::rollout::write_manifest(&bucket, to, &release)?;
    Ok(Published {
        versioned: bucket.url(&versioned),
        latest: bucket.url(&latest),
        bytes: size,
        manifest: bucket.url(&to.child(MANIFEST_NAME)),
        release,
    })
}

/// Where a review's rewritten annotations go besides the local folder: for an s3:// dataset, its
/// `Annotations/ID.xml` objects (the local folder is then the mirror); for a folder, nowhere else.
pub fn annotation_publisher(data: &Path) -> Result<Box<Publish>, String> {
    let text = data.to_string_lossy();
    if !detection_storage::is_s3(&text) {
        return Ok(Box::new(|_, _| Ok(())));
    }
    let url = S3Url::parse(&text).map_err(|e| e.to_string())?;
    let bucket = Bucket::open_url(&url, &Overrides::default()).map_err(|e| e.to_string())?;
    Ok(Box::new(move |id, xml| {
        let key = url.child(&format!("Annotations/{id}.xml"));
        bucket
            .put(&key, xml.to_vec())
            .map_err(|e| format!("cannot upload {}: {e}", bucket.url(&key)))
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_utc_calendar_dates() {
        assert_eq!(utc_stamp(0), "19700101T000000Z");
        assert_eq!(utc_stamp(951_782_400), "20000229T000000Z");
        assert_eq!(utc_stamp(1_796_000_000), "20261130T005320Z");
    }

    #[test]
    fn device_label_lists_merge_and_disagreements_name_both_files() {
        let dir = std::env::temp_dir().join(format!("trainer-labels-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("labels")).unwrap();
        std::fs::write(dir.join("labels/cam-a.txt"), "background\nstop\nclass-2\n").unwrap();
        std::fs::write(dir.join("labels/cam-b.txt"), "background\nstop\nyield\nparking\n").unwrap();
        assert_eq!(merged_labels(&dir).unwrap(), ["background", "stop", "yield", "parking"]);
        std::fs::write(dir.join("labels/cam-c.txt"), "background\nyield\n").unwrap();
        let e = merged_labels(&dir).unwrap_err();
        assert!(e.contains("cam-c.txt") && e.contains("cam-a.txt"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
