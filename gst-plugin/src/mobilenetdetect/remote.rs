//! Models in object storage (`model=s3://bucket/models/latest.onnx`): downloaded into a local cache (one file
//! per ETag, so a loaded model's file never changes under it) and loaded from there; `watch-model` polls the
//! object's ETag and reloads through the usual background load and no-frame-lost swap. Each element compares
//! the stored version with the one *it* runs: elements of one host share the cache's files, never a notion of
//! "the current version" (one element's swap must not hide a new version from another).

use detection_inference::LoadError;
use detection_storage::mirror::{cached_object, fetch_object, mark_current};
use detection_storage::{Bucket, Cancel, ErrorKind, Overrides, S3Url};
use std::path::{Path, PathBuf};

pub fn is_remote(model: &str) -> bool {
    detection_storage::is_s3(model)
}

fn cache_for(url: &S3Url) -> PathBuf {
    crate::fleet::cache_dir("models").join(&url.bucket)
}

fn parse(model: &str) -> Result<S3Url, LoadError> {
    let url = S3Url::parse(model).map_err(|e| LoadError::Settings(e.to_string()))?;
    if url.key.is_empty() {
        return Err(LoadError::Settings(format!(
            "{model}: names a bucket, not a model object"
        )));
    }
    Ok(url)
}

/// The local copy of the model at `model` (an s3:// URL), downloaded unless the cached copy has its ETag. With
/// `offline_ok` (at start), an unreachable bucket falls back to the last downloaded copy; the second value is
/// then the warning to give. `cancel` abandons the download (the element is stopping).
pub fn fetch(
    model: &str,
    overrides: &Overrides,
    offline_ok: bool,
    cancel: &Cancel,
) -> Result<(PathBuf, Option<String>), LoadError> {
    let url = parse(model)?;
    let cache = cache_for(&url);
    // On a thread of its own: the caller (an application's thread changing state) may not block SIGPIPE.
    let fetched = std::thread::scope(|scope| {
        scope
            .spawn(|| {
                crate::fleet::block_io_signals_in_this_thread();
                Bucket::open_url(&url, overrides)
                    .and_then(|b| fetch_object(&b.with_cancel(cancel.clone()), &url.key, &cache))
            })
            .join()
    })
    .map_err(|_| LoadError::Open(format!("{model}: the download failed unexpectedly")))?;
    match fetched {
        Ok((path, _)) => Ok((path, None)),
        Err(e) if e.kind == ErrorKind::Failed && offline_ok => match cached_object(&cache, &url.key) {
            Some(path) => {
                let warning = format!(
                    "cannot download {model} ({e}); running the copy downloaded earlier, {}",
                    path.display()
                );
                Ok((path, Some(warning)))
            }
            None => Err(LoadError::Open(format!("cannot download the model: {e}"))),
        },
        Err(e) if e.kind == ErrorKind::Invalid => Err(LoadError::Settings(e.to_string())),
        Err(e) if e.kind == ErrorKind::Cancelled => Err(LoadError::Open(format!("{model}: download cancelled"))),
        Err(e) => Err(LoadError::Open(format!("cannot download the model: {e}"))),
    }
}

const RETRY_POLLS: u32 = 10;

/// Records the local copy of `model` that loaded, so that an offline start runs it (a copy that failed to load
/// is never used again).
pub fn loaded(model: &str, path: &std::path::Path) -> Result<(), String> {
    let url = parse(model).map_err(|e| e.to_string())?;
    mark_current(&cache_for(&url), &url.key, path).map_err(|e| e.to_string())
}

/// Polls one model object for `watch-model`.
pub struct RemoteWatch {
    url: S3Url,
    bucket: Bucket,
    /// The last version a reload was asked for and the polls since: a version that failed to load (a bad
    /// upload, a download cut short) is tried again only every `RETRY_POLLS` polls, not warned about at each.
    requested: Option<(String, u32)>,
}

impl RemoteWatch {
    /// `cancel` abandons a poll in flight (the element is stopping).
    pub fn new(model: &str, overrides: &Overrides, cancel: &Cancel) -> Result<Self, String> {
        let url = parse(model).map_err(|e| e.to_string())?;
        let bucket = Bucket::open_url(&url, overrides)
            .map_err(|e| e.to_string())?
            .with_cancel(cancel.clone());
        Ok(Self {
            url,
            bucket,
            requested: None,
        })
    }

    /// Whether the object changed from `running`, the local copy this element runs (and no reload was asked
    /// for this version yet). A failed poll (the network) is logged by the caller and tried again at the next
    /// interval.
    pub fn changed(&mut self, running: Option<&Path>) -> Result<bool, String> {
        let Some(object) = self.bucket.head(&self.url.key).map_err(|e| e.to_string())? else {
            return Ok(false);
        };
        let stored = cache_for(&self.url).join(format!(
            "{}-{}",
            detection_storage::safe_name(&object.etag),
            detection_storage::safe_name(&self.url.key)
        ));
        if running == Some(stored.as_path()) {
            self.requested = None;
            return Ok(false);
        }
        if let Some((etag, polls)) = &mut self.requested
            && *etag == object.etag
        {
            *polls += 1;
            if *polls < RETRY_POLLS {
                return Ok(false);
            }
        }
        self.requested = Some((object.etag, 0));
        Ok(true)
    }
}
