//! Local copies of stored objects, keyed by ETag so that nothing unchanged is downloaded twice: a whole prefix
//! (a pooled dataset for the trainer) or one object (a model for the element).

use crate::{Bucket, Error, ErrorKind, Object};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The record of what a mirrored folder holds: one line per file, `ETAG<TAB>SIZE<TAB>RELATIVE-KEY`.
const MANIFEST: &str = ".etags";
/// The manifest is saved every this many downloads, so an interrupted mirror keeps its progress.
const SAVE_EVERY: usize = 200;
/// Downloads in flight while mirroring (objects of a capture are tens of kB: latency-bound).
const DOWNLOADS_AT_ONCE: usize = 8;

/// What a mirror run did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct MirrorReport {
    pub listed: usize,
    pub downloaded: usize,
    pub downloaded_bytes: u64,
    /// Already here with the same ETag.
    pub unchanged: usize,
    /// Local files whose object is gone from the bucket.
    pub removed: usize,
}

fn local_error(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::new(path.display().to_string(), ErrorKind::Failed, e.to_string())
}

/// Writes `bytes` to `path` whole (creating its folder): `detection_common::files::write_atomically`, whose
/// temporary files a later run removes if this process dies mid-write.
pub fn write_whole(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| local_error(dir, e))?;
    }
    detection_common::files::write_atomically(path, bytes).map_err(|e| local_error(path, e))
}

fn read_manifest(dir: &Path) -> BTreeMap<String, (String, u64)> {
    let text = std::fs::read_to_string(dir.join(MANIFEST)).unwrap_or_default();
    text.lines()
        .filter_map(|line| {
            let mut parts = line.splitn(3, '\t');
            let (etag, size, key) = (parts.next()?, parts.next()?.parse().ok()?, parts.next()?);
            Some((key.to_string(), (etag.to_string(), size)))
        })
        .collect()
}

fn save_manifest(dir: &Path, manifest: &BTreeMap<String, (String, u64)>) -> Result<(), Error> {
    let text: String = manifest
        .iter()
        .map(|(key, (etag, size))| format!("{etag}\t{size}\t{key}\n"))
        .collect();
    write_whole(&dir.join(MANIFEST), text.as_bytes())
}

/// Mirrors the objects under `prefix` whose key relative to it passes `wanted` into `dir`, at the same relative
/// paths. Only objects whose ETag or size differ from the manifest's record (or whose file is missing) are
/// downloaded; files of objects no longer listed are removed. `progress(done, to_download)` is called after each
/// download.
pub fn mirror_prefix(
    bucket: &Bucket,
    prefix: &str,
    dir: &Path,
    wanted: impl Fn(&str) -> bool,
    mut progress: impl FnMut(usize, usize),
) -> Result<MirrorReport, Error> {
    std::fs::create_dir_all(dir).map_err(|e| local_error(dir, e))?;
    let base = if prefix.is_empty() {
        String::new()
    } else {
        format!("{prefix}/")
    };
    let listed: Vec<(String, Object)> = bucket
        .list(prefix)?
        .into_iter()
        .filter_map(|o| {
            let rel = o.key.strip_prefix(&base)?.to_string();
            // Keys that would escape the folder or name hidden files are not ours to mirror.
            let safe = !rel.is_empty() && !rel.split('/').any(|p| p.is_empty() || p == ".." || p.starts_with('.'));
            (safe && wanted(&rel)).then_some((rel, o))
        })
        .collect();
    let mut manifest = read_manifest(dir);
    let mut report = MirrorReport {
        listed: listed.len(),
        ..Default::default()
    };
    let to_get: Vec<&(String, Object)> = listed
        .iter()
        .filter(|(rel, o)| {
            let recorded = manifest
                .get(rel)
                .is_some_and(|(etag, size)| *etag == o.etag && *size == o.size);
            let present = std::fs::metadata(dir.join(rel)).is_ok_and(|m| m.len() == o.size);
            !(recorded && present)
        })
        .collect();
    report.unchanged = listed.len() - to_get.len();
    let rel_of: BTreeMap<&str, &str> = to_get.iter().map(|(rel, o)| (o.key.as_str(), rel.as_str())).collect();
    let keys: Vec<String> = to_get.iter().map(|(_, o)| o.key.clone()).collect();
    let total = keys.len();
    let fetched = bucket.get_each(&keys, DOWNLOADS_AT_ONCE, |key, result| {
        let (bytes, got) = match result {
            Ok(x) => x,
            // Deleted between the listing and now: it is simply not part of this mirror.
            Err(e) if e.kind == ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        };
        let rel = rel_of[key];
        write_whole(&dir.join(rel), &bytes)?;
        manifest.insert(rel.to_string(), (got.etag, got.size));
        report.downloaded += 1;
        report.downloaded_bytes += got.size;
        if report.downloaded.is_multiple_of(SAVE_EVERY) {
            save_manifest(dir, &manifest)?;
        }
        progress(report.downloaded, total);
        Ok(())
    });
    if let Err(e) = fetched {
        // What arrived stays recorded: the next run downloads only the rest.
        save_manifest(dir, &manifest)?;
        return Err(e);
    }
    let keep: std::collections::BTreeSet<&str> = listed.iter().map(|(rel, _)| rel.as_str()).collect();
    let gone: Vec<String> = manifest
        .keys()
        .filter(|k| !keep.contains(k.as_str()))
        .cloned()
        .collect();
    for rel in gone {
        manifest.remove(&rel);
        if std::fs::remove_file(dir.join(&rel)).is_ok() {
            report.removed += 1;
        }
    }
    save_manifest(dir, &manifest)?;
    Ok(report)
}

/// The pointer file that names the newest local copy of an object in a cache folder.
fn pointer(cache_dir: &Path, key: &str) -> PathBuf {
    cache_dir.join(format!("{}.current", crate::safe_name(key)))
}

/// The local copy of `key`, downloaded unless the copy in `cache_dir` has the stored ETag. Each version gets its
/// own file (named by its ETag) so a loaded model's file never changes under it. `mark_current` records a copy
/// once it proved usable.
pub fn fetch_object(bucket: &Bucket, key: &str, cache_dir: &Path) -> Result<(PathBuf, Object), Error> {
    let base = crate::safe_name(key);
    let meta = bucket
        .head(key)?
        .ok_or_else(|| Error::new(bucket.url(key), ErrorKind::NotFound, "no such object"))?;
    let file_for = |etag: &str| cache_dir.join(format!("{}-{base}", crate::safe_name(etag)));
    let mut path = file_for(&meta.etag);
    let mut object = meta.clone();
    if std::fs::metadata(&path).map(|m| m.len()).ok() != Some(meta.size) {
        // Replaced between the HEAD and the GET: the file is named after what was actually downloaded.
        let (bytes, got) = bucket.get(key)?;
        path = file_for(&got.etag);
        write_whole(&path, &bytes)?;
        object = got;
    }
    Ok((path, object))
}

/// Other versions of an object kept beside the current copy: another element of this host (watching the same
/// object at another interval) may be about to load one of them.
const KEEP_OTHER_VERSIONS: usize = 2;

/// Records `path` (from `fetch_object`) as the copy of `key` in use, and removes other copies but the
/// `KEEP_OTHER_VERSIONS` newest.
pub fn mark_current(cache_dir: &Path, key: &str, path: &Path) -> Result<(), Error> {
    let name = path.file_name().unwrap_or_default().to_string_lossy().to_string();
    write_whole(&pointer(cache_dir, key), name.as_bytes())?;
    let suffix = format!("-{}", crate::safe_name(key));
    let mut others: Vec<(std::time::SystemTime, PathBuf)> = std::fs::read_dir(cache_dir)
        .map(|entries| {
            entries
                .flatten()
                .filter(|e| {
                    let n = e.file_name().to_string_lossy().to_string();
                    n != name && n.ends_with(&suffix) && !n.starts_with('.')
                })
                .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
                .collect()
        })
        .unwrap_or_default();
    others.sort_by_key(|(modified, _)| std::cmp::Reverse(*modified));
    for (_, old) in others.into_iter().skip(KEEP_OTHER_VERSIONS) {
        let _ = std::fs::remove_file(old);
    }
    Ok(())
}

/// The copy of `key` last marked current in `cache_dir`, for starting while the bucket is unreachable.
pub fn cached_object(cache_dir: &Path, key: &str) -> Option<PathBuf> {
    let name = std::fs::read_to_string(pointer(cache_dir, key)).ok()?;
    let path = cache_dir.join(name.trim());
    path.is_file().then_some(path)
}
