//! The installed plugin, as a user meets it: `scripts/install` into a fresh per-user GStreamer folder, then
//! `gst-launch-1.0` with no GST_PLUGIN_PATH and no ORT_DYLIB_PATH runs a detection pipeline.

use std::path::PathBuf;
use std::process::Command;

fn repo_root() -> PathBuf {
    // The run-time value first: clones at other paths share one persistent target dir, and a test binary
    // built in one of them must not reach into the other.
    let manifest =
        std::env::var_os("CARGO_MANIFEST_DIR").map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from);
    manifest.parent().unwrap().to_path_buf()
}

/// The newest build of the plugin in this target folder (scripts/test builds the workspace first).
fn built_plugin() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let deps = exe.parent().unwrap();
    [
        deps.parent().unwrap().join("libgstmobilenetdetect.so"),
        deps.join("libgstmobilenetdetect.so"),
    ]
    .into_iter()
    .filter(|p| p.exists())
    .max_by_key(|p| p.metadata().and_then(|m| m.modified()).ok())
    .expect("build the workspace first (cargo build --workspace): the plugin cdylib is missing")
}

#[test]
fn installed_plugin_runs_in_gst_launch() {
    let tmp = std::env::temp_dir().join(format!("mobilenetdetect-e2e-install-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    let (data, config) = (tmp.join("data"), tmp.join("config"));
    std::fs::create_dir_all(&config).unwrap();
    // Where ONNX Runtime is recorded: start from what setup recorded for this user, if anything.
    let user_cfg = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap()).join(".config"))
        .join("mobilenetdetect");
    if user_cfg.exists() {
        std::fs::create_dir_all(config.join("mobilenetdetect")).unwrap();
        let _ = std::fs::copy(
            user_cfg.join("onnxruntime-path"),
            config.join("mobilenetdetect/onnxruntime-path"),
        );
    }
    let env = |c: &mut Command| {
        c.env("XDG_DATA_HOME", &data)
            .env("XDG_CONFIG_HOME", &config)
            .env("GST_REGISTRY", tmp.join("registry.bin"))
            .env_remove("GST_PLUGIN_PATH")
            .env_remove("ORT_DYLIB_PATH");
    };
    let mut install = Command::new(repo_root().join("scripts/install"));
    install.arg("--plugin").arg(built_plugin());
    env(&mut install);
    let out = install.output().expect("scripts/install runs");
    assert!(
        out.status.success(),
        "install failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(data.join("gstreamer-1.0/plugins/libgstmobilenetdetect.so").exists());
    let recorded = std::fs::read_to_string(config.join("mobilenetdetect/onnxruntime-path")).unwrap();
    assert!(
        recorded
            .trim()
            .starts_with(data.join("mobilenetdetect/onnxruntime").to_str().unwrap()),
        "{recorded}"
    );

    let model = tmp.join("ball.onnx");
    std::fs::write(
        &model,
        mobilenetdetect_testkit::models::blob_detector_model(320, 240, "ball"),
    )
    .unwrap();
    let mut launch = Command::new("gst-launch-1.0");
    env(&mut launch);
    launch.args([
        "-m",
        "videotestsrc",
        "pattern=ball",
        "num-buffers=5",
        "!",
        "video/x-raw,format=I420,width=320,height=240",
        "!",
        "mobilenetdetect",
        &format!("model={}", model.display()),
        "score-threshold=0.7",
        "post-messages=true",
        "!",
        "fakesink",
    ]);
    let out = launch.output().expect("gst-launch-1.0 runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let messages: Vec<&str> = stdout
        .lines()
        .filter(|l| l.contains("mobilenetdetect, timestamp="))
        .collect();
    assert_eq!(messages.len(), 5, "one message per frame:\n{stdout}");
    assert!(
        messages.iter().all(|m| m.contains(r"label\=\(string\)ball")),
        "the ball is found in every frame:\n{stdout}"
    );
    std::fs::remove_dir_all(&tmp).unwrap();
}
