//! The Debian package (`scripts/package`) as a robot's owner meets it: installed with apt-get on this machine,
//! the plugin found by GStreamer and ONNX Runtime found by the plugin with no environment variable and no
//! checkout, a detect → capture pipeline, the installed trainer's `check` on what it captured, and a removal that
//! leaves none of the package's files behind. Installing needs root: elsewhere the test says so and passes.

use std::path::{Path, PathBuf};
use std::process::Command;

fn repo_root() -> PathBuf {
    let manifest =
        std::env::var_os("CARGO_MANIFEST_DIR").map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from);
    manifest.parent().unwrap().to_path_buf()
}

fn run(c: &mut Command) -> String {
    let out = c.output().unwrap_or_else(|e| panic!("{c:?}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{c:?} failed:\n{text}");
    text
}

/// A command with none of the caller's environment: what a shell on a fresh robot has.
fn clean(program: &str, home: &Path) -> Command {
    let mut c = Command::new(program);
    c.env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .env("HOME", home)
        .current_dir(home);
    c
}

#[test]
fn the_package_installs_runs_a_pipeline_and_removes_cleanly() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: installing a package needs root (run scripts/test as root to include this test)");
        return;
    }
    let installed = Command::new("dpkg-query")
        .args(["-W", "mobilenetdetect"])
        .output()
        .unwrap();
    if installed.status.success() {
        eprintln!("skipped: a mobilenetdetect package is installed on this machine already; not replacing it");
        return;
    }
    let tmp = std::env::temp_dir().join(format!("mobilenetdetect-e2e-package-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    let home = tmp.join("home");
    std::fs::create_dir_all(&home).unwrap();
    let started = std::time::Instant::now();
    let deb = run(Command::new(repo_root().join("scripts/package"))
        .arg("--output")
        .arg(&tmp));
    let deb = deb
        .lines()
        .map(|l| PathBuf::from(l.trim()))
        .find(|p| p.extension().is_some_and(|e| e == "deb") && p.is_file())
        .unwrap_or_else(|| panic!("scripts/package printed no .deb path:\n{deb}"));
    let packaged = started.elapsed();

    run(Command::new("apt-get").args(["install", "-y", "-q"]).arg(&deb));
    let files: Vec<PathBuf> = run(Command::new("dpkg").args(["-L", "mobilenetdetect"]))
        .lines()
        .map(PathBuf::from)
        .filter(|p| p.is_file())
        .collect();
    for expected in [
        "/usr/bin/mobilenet-trainer",
        "/usr/share/doc/mobilenetdetect/onnxruntime-LICENSE",
    ] {
        assert!(files.contains(&PathBuf::from(expected)), "{files:?}");
    }
    let result = std::panic::catch_unwind(|| {
        let inspect = run(clean("gst-inspect-1.0", &home).arg("mobilenetdetect"));
        assert!(inspect.contains("MobileNet-SSD"), "{inspect}");
        let model = home.join("ball.onnx");
        std::fs::write(
            &model,
            mobilenetdetect_testkit::models::blob_detector_model(320, 240, "ball"),
        )
        .unwrap();
        let captures = home.join("captures");
        let pipeline = format!(
            "detecttestsrc num-buffers=30 num-objects=2 ! video/x-raw,width=320,height=240 ! \
             mobilenetdetect model={} ! detectioncapture location={} source=ground-truth every-n-frames=3 ! fakesink",
            model.display(),
            captures.display()
        );
        run(clean("gst-launch-1.0", &home)
            .arg("-q")
            .args(pipeline.split_whitespace()));
        let check = run(clean("mobilenet-trainer", &home)
            .args(["check", "--data"])
            .arg(&captures));
        assert!(
            check.contains("10 images") && check.contains("no problems found"),
            "{check}"
        );
        check
    });
    run(Command::new("apt-get").args(["remove", "-y", "-q", "--purge", "mobilenetdetect"]));
    let left: Vec<&PathBuf> = files.iter().filter(|p| p.exists()).collect();
    assert!(left.is_empty(), "left behind after removal: {left:?}");
    for dir in [
        "/usr/lib/mobilenetdetect",
        "/usr/share/mobilenetdetect",
        "/usr/share/doc/mobilenetdetect",
    ] {
        assert!(!Path::new(dir).exists(), "{dir} left behind");
    }
    let check = result.unwrap_or_else(|e| std::panic::resume_unwind(e));
    eprintln!(
        "package built in {:.0} s ({} KB), installed, ran, removed; the installed trainer's check:\n{check}",
        packaged.as_secs_f64(),
        std::fs::metadata(&deb).unwrap().len() / 1024
    );
    let _ = std::fs::remove_dir_all(&tmp);
}
