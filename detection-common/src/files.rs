//! Files that are either complete or absent: every file the project writes for another process to read
//! (models, datasets, checkpoints, charts, metrics) goes through here.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// A temporary name beside `path` that no other writer — thread or process — uses at the same time:
/// `.NAME.PID.N.tmp` (the PID lets a later writer tell a dead writer's leftovers from a live one's).
pub fn temp_path(path: &Path) -> PathBuf {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    path.with_file_name(format!(".{name}.{}.{n}.tmp", std::process::id()))
}

/// Removes the temporary files (see [`temp_path`]) that writers which no longer run left in `dir` — a
/// process killed mid-write — and returns how many. Those of a live process (this one included) stay.
pub fn remove_dead_writers_temp_files(dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    let mut removed = 0;
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(inner) = name.strip_prefix('.').and_then(|n| n.strip_suffix(".tmp")) else {
            continue;
        };
        // NAME.PID.N: the PID is the second field from the end.
        let mut fields = inner.rsplit('.');
        let (Some(n), Some(pid)) = (fields.next(), fields.next()) else {
            continue;
        };
        let (Ok(_), Ok(pid)) = (n.parse::<u64>(), pid.parse::<u32>()) else {
            continue;
        };
        let alive = pid == std::process::id() || Path::new("/proc").join(pid.to_string()).exists();
        if !alive && std::fs::remove_file(entry.path()).is_ok() {
            removed += 1;
        }
    }
    removed
}

/// Writes bytes to `path` atomically: a temporary file in the same folder, fsync, then rename, so a reader
/// (a pipeline watching a model, the trainer reading a dataset) never sees a half-written file, and after a
/// power cut a name never points at data that did not land.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    write_atomically_with(path, |tmp| {
        let mut f = std::fs::File::create(tmp)?;
        f.write_all(bytes)
    })
}

/// The same for writers that insist on writing a file themselves (a checkpoint store, a PNG encoder):
/// `write` fills the temporary path it is given, which is then synced and renamed over `path`. The temporary
/// file is removed when anything fails.
pub fn write_atomically_with<E>(path: &Path, write: impl FnOnce(&Path) -> Result<(), E>) -> std::io::Result<()>
where
    E: std::fmt::Display,
{
    if path.file_name().is_none() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("{} has no file name", path.display()),
        ));
    }
    let tmp = temp_path(path);
    let result = write(&tmp)
        .map_err(|e| std::io::Error::other(e.to_string()))
        .and_then(|()| std::fs::File::open(&tmp)?.sync_all())
        .and_then(|()| std::fs::rename(&tmp, path));
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_leaves_no_temporary() {
        let dir = std::env::temp_dir().join(format!("onnx-atomic-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("m.onnx");
        write_atomically(&p, b"abc").unwrap();
        write_atomically(&p, b"defg").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"defg");
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1);
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(write_atomically(Path::new("/nonexistent-dir/x.onnx"), b"x").is_err());
    }

    #[test]
    fn a_failed_writer_leaves_the_old_file_and_no_temporary() {
        let dir = std::env::temp_dir().join(format!("mobilenetdetect-files-with-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("plot.png");
        std::fs::write(&p, b"old").unwrap();
        let r = write_atomically_with(&p, |tmp| {
            std::fs::write(tmp, b"half")?;
            Err::<(), _>(std::io::Error::other("encoder failed"))
        });
        assert!(r.unwrap_err().to_string().contains("encoder failed"));
        assert_eq!(std::fs::read(&p).unwrap(), b"old");
        write_atomically_with(&p, |tmp| std::fs::write(tmp, b"new")).unwrap();
        // A dead writer's leftover goes, a live one's (this process) stays, other files are not touched.
        let dir = p.parent().unwrap();
        let dead = dir.join(".model.onnx.4000000000.3.tmp");
        std::fs::write(&dead, b"x").unwrap();
        let live = temp_path(&p);
        std::fs::write(&live, b"x").unwrap();
        let other = dir.join(".hidden.tmp");
        std::fs::write(&other, b"x").unwrap();
        assert_eq!(remove_dead_writers_temp_files(dir), 1);
        assert!(!dead.exists() && live.exists() && other.exists());
        std::fs::remove_file(&live).unwrap();
        std::fs::remove_file(&other).unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"new");
        assert_eq!(std::fs::read_dir(dir).unwrap().count(), 1, "no temporary left");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
