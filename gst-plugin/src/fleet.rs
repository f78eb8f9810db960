//! What the fleet-facing elements share: the device id, where a device keeps its on-disk queues (MQTT outbox,
//! upload spool), and the S3 connection properties (`endpoint-uri`, `region`, `access-key`, `secret-access-key`,
//! `session-token`: each overrides its `AWS_*` environment variable; names as in gst-plugins-rs' awss3sink).

use gst::glib;
use gst::prelude::*;

/// Makes a broken connection an error (EPIPE) instead of a SIGPIPE that ends the process, and a file-size limit
/// (`ulimit -f`) an error (EFBIG) instead of a SIGXFSZ that ends it, for the calling thread and the threads it
/// starts. A Rust program ignores SIGPIPE, but the plugin also runs inside C programs (gst-launch-1.0,
/// applications) that keep the default actions: a broker or S3 server going away mid-write, or an outbox at
/// its size limit, would kill the whole pipeline. Call it first thing in every thread that does network or
/// file I/O.
pub fn block_io_signals_in_this_thread() {
    // SAFETY: plain libc calls on a local, initialised signal set; only this thread's mask changes.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGPIPE);
        libc::sigaddset(&mut set, libc::SIGXFSZ);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
}

/// The host name: the default device id.
pub fn host_name() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most `buf.len()` bytes into the buffer.
    let ok = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) } == 0;
    let name = if ok {
        let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
        String::from_utf8_lossy(&buf[..end]).into_owned()
    } else {
        String::new()
    };
    if name.is_empty() { "device".into() } else { name }
}

/// `$XDG_STATE_HOME/mobilenetdetect/KIND/DEVICE/DESTINATION` (state that must survive restarts, unlike a cache).
pub fn state_dir(kind: &str, device_id: &str, location: &str) -> std::path::PathBuf {
    let state = std::env::var_os("XDG_STATE_HOME")
        .map(std::path::PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| std::path::Path::new(&h).join(".local/state")))
        .unwrap_or_else(std::env::temp_dir);
    let safe = |s: &str| -> String {
        s.chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                    c
                } else {
                    '_'
                }
            })
            .collect()
    };
    state
        .join("mobilenetdetect")
        .join(kind)
        .join(safe(device_id))
        .join(safe(location))
}

/// `$XDG_CACHE_HOME/mobilenetdetect/KIND` (downloads that can be fetched again).
pub fn cache_dir(kind: &str) -> std::path::PathBuf {
    std::env::var_os("XDG_CACHE_HOME")
        .map(std::path::PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| std::env::var_os("HOME").map(|h| std::path::Path::new(&h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir)
        .join("mobilenetdetect")
        .join(kind)
}

/// The S3 connection properties of an element.
#[derive(Debug, Clone, Default)]
pub struct S3Properties(pub detection_storage::Overrides);

const NAMES: [&str; 5] = [
    "endpoint-uri",
    "region",
    "access-key",
    "secret-access-key",
    "session-token",
];

impl S3Properties {
    pub fn specs() -> Vec<glib::ParamSpec> {
        let blurbs = [
            "S3: the server's URL, e.g. http://127.0.0.1:9000 for MinIO (default: AWS_ENDPOINT_URL, else AWS S3)",
            "S3: the region (default: AWS_REGION, AWS_DEFAULT_REGION, else us-east-1)",
            "S3: the access key id (default: AWS_ACCESS_KEY_ID)",
            "S3: the secret access key (default: AWS_SECRET_ACCESS_KEY); never read back",
            "S3: a session token for temporary credentials (default: AWS_SESSION_TOKEN); never read back",
        ];
        NAMES
            .iter()
            .zip(blurbs)
            .map(|(name, blurb)| {
                glib::ParamSpecString::builder(name)
                    .nick(name)
                    .blurb(blurb)
                    .mutable_ready()
                    .build()
            })
            .collect()
    }

    fn field(&mut self, name: &str) -> Option<&mut Option<String>> {
        let o = &mut self.0;
        Some(match name {
            "endpoint-uri" => &mut o.endpoint,
            "region" => &mut o.region,
            "access-key" => &mut o.access_key,
            "secret-access-key" => &mut o.secret_access_key,
            "session-token" => &mut o.session_token,
            _ => return None,
        })
    }

    /// Sets the property `name` if it is one of these; false otherwise.
    pub fn set(&mut self, name: &str, value: &glib::Value) -> bool {
        match self.field(name) {
            Some(f) => {
                *f = value
                    .get::<Option<String>>()
                    .expect("type checked upstream")
                    .filter(|v| !v.is_empty());
                true
            }
            None => false,
        }
    }

    /// The property `name` if it is one of these (secrets read back as None).
    pub fn get(&self, name: &str) -> Option<glib::Value> {
        let o = &self.0;
        Some(match name {
            "endpoint-uri" => o.endpoint.to_value(),
            "region" => o.region.to_value(),
            "access-key" => o.access_key.to_value(),
            "secret-access-key" | "session-token" => None::<String>.to_value(),
            _ => return None,
        })
    }
}

/// An exclusive hold on something two elements must never share (an MQTT client id, a sample-name prefix, a
/// spool or outbox folder), across threads and processes of this host: an advisory lock on a file, released
/// when the `Claim` is dropped or the process dies (so a killed pipeline never leaves a stale claim).
#[derive(Debug)]
pub struct Claim {
    _lock: std::fs::File,
    /// The identity claimed (`claim_identity`), or the folder's path (`claim_folder`).
    pub id: String,
}

/// The most elements of one host that can share a base identity (`car`, `car-2`, … `car-64`).
const MAX_SLOTS: u32 = 64;

fn try_lock(path: &std::path::Path) -> Result<Option<std::fs::File>, String> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(Some(file)),
        Err(std::fs::TryLockError::WouldBlock) => Ok(None),
        Err(std::fs::TryLockError::Error(e)) => Err(format!("cannot lock {}: {e}", path.display())),
    }
}

/// The first of `base`, `base-2`, `base-3`, … that no other element on this host holds for `scope` (a broker
/// address, a bucket prefix and its endpoint). The first element keeps the plain `base`, so a single pipeline's
/// names never change; a second one with the same device id gets its own instead of sharing.
pub fn claim_identity(kind: &str, scope: &str, base: &str) -> Result<Claim, String> {
    let dir = state_dir("claims", kind, scope);
    for slot in 1..=MAX_SLOTS {
        let id = if slot == 1 {
            base.to_string()
        } else {
            format!("{base}-{slot}")
        };
        let safe = detection_storage::safe_name(&id);
        if let Some(lock) = try_lock(&dir.join(format!("{safe}.lock")))? {
            return Ok(Claim { _lock: lock, id });
        }
    }
    Err(format!(
        "{MAX_SLOTS} elements on this host already use the id '{base}' for {scope}: give them distinct device-id values"
    ))
}

/// Sole use of the folder `dir` for one element's run; when another element (of this process or another) has
/// it, an error naming the folder, `what` it is and `fix`.
pub fn claim_folder(dir: &std::path::Path, what: &str, fix: &str) -> Result<Claim, String> {
    match try_lock(&dir.join(".lock"))? {
        Some(lock) => Ok(Claim {
            _lock: lock,
            id: dir.display().to_string(),
        }),
        None => Err(format!(
            "the {what} {} is in use by another element (this pipeline or another process): {fix}",
            dir.display()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_claim_gets_the_next_identity_and_a_released_one_is_reused() {
        let scope = format!("test-{}", std::process::id());
        let a = claim_identity("test", &scope, "car").unwrap();
        let b = claim_identity("test", &scope, "car").unwrap();
        assert_eq!((a.id.as_str(), b.id.as_str()), ("car", "car-2"));
        drop(a);
        assert_eq!(claim_identity("test", &scope, "car").unwrap().id, "car");
        let dir = std::env::temp_dir().join(format!("claim-folder-{}", std::process::id()));
        let held = claim_folder(&dir, "spool", "give each pipeline its own").unwrap();
        let e = claim_folder(&dir, "spool", "give each pipeline its own").unwrap_err();
        assert!(e.contains(&dir.display().to_string()) && e.contains("in use"), "{e}");
        drop(held);
        claim_folder(&dir, "spool", "").unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        let _ = std::fs::remove_dir_all(state_dir("claims", "test", &scope));
    }
}
