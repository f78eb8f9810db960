//! ONNX Runtime discovery, checked in child processes (the runtime loads once per process):
//! gst-inspect works without it, a missing runtime is a clear error naming the fix.

mod common;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A folder holding only this build of the plugin, and a fresh registry file, for gst-launch/gst-inspect.
fn plugin_env(name: &str) -> (PathBuf, PathBuf) {
    let exe = std::env::current_exe().unwrap();
    let deps = exe.parent().unwrap();
    let plugin = [
        deps.join("libgstmobilenetdetect.so"),
        deps.parent().unwrap().join("libgstmobilenetdetect.so"),
    ]
    .into_iter()
    .find(|p| p.exists())
    .expect("the plugin cdylib is built next to the tests");
    let dir = common::temp_dir(name);
    let plugins = dir.join("plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    std::os::unix::fs::symlink(&plugin, plugins.join("libgstmobilenetdetect.so")).unwrap();
    (dir, plugins)
}

fn command(tool: &str, dir: &Path, plugins: &Path) -> Command {
    let mut c = Command::new(tool);
    let empty_home = dir.join("home");
    std::fs::create_dir_all(&empty_home).unwrap();
    c.env("GST_PLUGIN_PATH", plugins)
        .env("GST_REGISTRY", dir.join("registry.bin"))
        .env("HOME", &empty_home)
        .env("XDG_CONFIG_HOME", empty_home.join(".config"))
        .env("XDG_DATA_HOME", empty_home.join(".local/share"))
        .env_remove("ORT_DYLIB_PATH");
    c
}

#[test]
fn gst_inspect_works_without_onnx_runtime() {
    let (dir, plugins) = plugin_env("inspect");
    let out = command("gst-inspect-1.0", &dir, &plugins)
        .arg("mobilenetdetect")
        .output()
        .expect("gst-inspect-1.0 runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for prop in [
        "model-format",
        "execution-provider",
        "class-thresholds",
        "interval",
        "resize",
        "post-messages",
    ] {
        assert!(stdout.contains(prop), "gst-inspect lists {prop}");
    }
}

#[test]
fn missing_onnx_runtime_is_a_clear_error() {
    let (dir, plugins) = plugin_env("no-ort");
    let model = common::write_model(
        "no-ort-model",
        &mobilenetdetect_testkit::models::colour_probe_model(
            mobilenetdetect_testkit::models::ImageInput::nchw(8, 8),
            [0.0, 0.0, 1.0, 1.0],
            &[],
        ),
    );
    let launch = |extra: &[(&str, &str)]| {
        let mut c = command("gst-launch-1.0", &dir, &plugins);
        for (k, v) in extra {
            c.env(k, v);
        }
        c.args([
            "videotestsrc",
            "num-buffers=1",
            "!",
            "mobilenetdetect",
            &format!("model={model}"),
            "!",
            "fakesink",
        ]);
        let out = c.output().expect("gst-launch-1.0 runs");
        assert!(!out.status.success(), "the pipeline must fail");
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    };
    let text = launch(&[]);
    assert!(
        text.contains("ONNX Runtime not found") && text.contains("scripts/setup"),
        "{text}"
    );
    let text = launch(&[("ORT_DYLIB_PATH", "/nonexistent/libonnxruntime.so.1")]);
    assert!(
        text.contains("ORT_DYLIB_PATH=/nonexistent/libonnxruntime.so.1 is not a file"),
        "{text}"
    );
    let not_a_lib = dir.join("libonnxruntime.so.1.99.0");
    std::fs::write(&not_a_lib, "garbage").unwrap();
    let text = launch(&[("ORT_DYLIB_PATH", not_a_lib.to_str().unwrap())]);
    assert!(
        text.contains("cannot load ONNX Runtime from") && text.contains("libonnxruntime.so.1.99.0"),
        "{text}"
    );
}
