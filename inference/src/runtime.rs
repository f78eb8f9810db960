//! Finding and loading the ONNX Runtime shared library, once per process.
//!
//! The library is looked up, in order, at:
//! 1. `ORT_DYLIB_PATH` (a file);
//! 2. next to this plugin: `libonnxruntime.so*` in the plugin's folder or its `mobilenetdetect/` subfolder
//!    (where `scripts/install` puts it);
//! 3. for a plugin or program installed under `/usr` (the Debian package of `scripts/package`):
//!    `/usr/lib/mobilenetdetect/`, where the package puts the library it ships;
//! 4. the path recorded by `scripts/setup` in `$XDG_CONFIG_HOME/mobilenetdetect/onnxruntime-path`
//!    (`~/.config/...` by default).

use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

pub const CONFIG_FILE: &str = "mobilenetdetect/onnxruntime-path";
/// Where the Debian package puts the ONNX Runtime library it ships.
pub const PACKAGE_LIBRARY_DIR: &str = "/usr/lib/mobilenetdetect";

const HOW_TO_GET: &str = "Run scripts/setup from the mobilenetdetect source tree (it installs the PyPI onnxruntime \
    wheel's library and records where), or set ORT_DYLIB_PATH to a libonnxruntime.so file (>= 1.22)";

static ENVIRONMENT: OnceLock<Result<ort::environment::Environment, String>> = OnceLock::new();

/// The process-wide ONNX Runtime environment, loading the library on first use.
pub fn environment() -> Result<&'static ort::environment::Environment, String> {
    ENVIRONMENT
        .get_or_init(|| {
            let path = find_library()?;
            let builder = ort::init_from(&path)
                .map_err(|e| format!("cannot load ONNX Runtime from {}: {e}. {HOW_TO_GET}", path.display()))?;
            builder
                .with_name("mobilenetdetect")
                .build()
                .map_err(|e| format!("cannot create the ONNX Runtime environment ({}): {e}", path.display()))
        })
        .as_ref()
        .map_err(Clone::clone)
}

/// The folder holding this shared object (the plugin, or the test binary linking the rlib).
fn own_folder() -> Option<PathBuf> {
    let mut info: libc::Dl_info = unsafe { std::mem::zeroed() };
    let addr = own_folder as *const libc::c_void;
    if unsafe { libc::dladdr(addr, &mut info) } == 0 || info.dli_fname.is_null() {
        return None;
    }
    let name = unsafe { std::ffi::CStr::from_ptr(info.dli_fname) };
    let path = Path::new(std::ffi::OsStr::from_bytes(name.to_bytes()));
    path.parent().map(Path::to_path_buf)
}

/// The newest `libonnxruntime.so*` file in `dir`.
fn library_in(dir: &Path) -> Option<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.is_file()
                && p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("libonnxruntime.so"))
        })
        .collect();
    found.sort();
    found.pop()
}

pub fn config_file() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))?;
    Some(base.join(CONFIG_FILE))
}

/// Where the library will be loaded from, or why it cannot be found.
pub fn find_library() -> Result<PathBuf, String> {
    if let Some(p) = std::env::var_os("ORT_DYLIB_PATH").filter(|v| !v.is_empty()) {
        let p = PathBuf::from(p);
        return if p.is_file() {
            Ok(p)
        } else {
            Err(format!(
                "ORT_DYLIB_PATH={} is not a file (it must name the library file itself)",
                p.display()
            ))
        };
    }
    if let Some(dir) = own_folder() {
        // GStreamer may load the plugin through /lib, a link to /usr/lib on merged-/usr systems.
        let installed = std::fs::canonicalize(&dir).unwrap_or_else(|_| dir.clone());
        let packaged = installed
            .starts_with("/usr/")
            .then(|| PathBuf::from(PACKAGE_LIBRARY_DIR));
        for d in [Some(dir.join("mobilenetdetect")), Some(dir), packaged]
            .into_iter()
            .flatten()
        {
            if let Some(p) = library_in(&d) {
                return Ok(p);
            }
        }
    }
    if let Some(cfg) = config_file()
        && let Ok(text) = std::fs::read_to_string(&cfg)
    {
        let p = PathBuf::from(text.trim());
        if p.is_file() {
            return Ok(p);
        }
        return Err(format!(
            "ONNX Runtime not found: {} points to {}, which does not exist. {HOW_TO_GET}",
            cfg.display(),
            p.display()
        ));
    }
    Err(format!("ONNX Runtime not found. {HOW_TO_GET}"))
}
