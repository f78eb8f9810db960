//! benchmarks/active_learning, short (the documented run takes about 40 minutes): one seed, one round of 120
//! frames, a budget of 10 frames, 1 epoch, two policies. It checks the loop's bookkeeping, not its numbers: each
//! policy's pool grows by exactly the budget, the labelled frames carry the ground truth of the frame the policy
//! chose (matched by pts, marked reviewed), and the CSV and the chart hold every run.

use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    let manifest =
        std::env::var_os("CARGO_MANIFEST_DIR").map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from);
    manifest.parent().unwrap().to_path_buf()
}

fn files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn a_short_active_learning_run_labels_the_budget_from_ground_truth() {
    let work = std::env::temp_dir().join(format!("mobilenetdetect-al-{}", std::process::id()));
    let out = Command::new(repo().join("benchmarks/active_learning"))
        .args([
            "--seeds", "1", "--rounds", "1", "--budget", "10", "--epochs", "1", "--frames", "120",
        ])
        .args(["--policies", "every-nth uncertain", "--work", work.to_str().unwrap()])
        .output()
        .expect("benchmarks/active_learning runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");

    let csv = std::fs::read_to_string(work.join("runs.csv")).unwrap();
    let rows: Vec<Vec<&str>> = csv.lines().skip(1).map(|l| l.split(',').collect()).collect();
    assert_eq!(rows.len(), 4, "{csv}");
    for row in &rows {
        let map: f64 = row[7].parse().unwrap();
        assert!((0.0..=1.0).contains(&map), "{csv}");
        if row[2] == "1" {
            // seed, policy, round, labelled, chosen, used, topped: 60 weak-model frames + the budget.
            assert_eq!(row[3], "70", "{csv}");
            let (used, topped): (usize, usize) = (row[5].parse().unwrap(), row[6].parse().unwrap());
            assert_eq!(used + topped, 10, "{csv}");
            if row[1] == "uncertain" {
                assert!(used > 0, "the weak model is uncertain somewhere: {csv}");
            }
        }
    }
    assert!(
        std::fs::read_to_string(work.join("chart.svg"))
            .unwrap()
            .contains("<polyline")
    );
    assert!(text.contains("every-nth") && text.contains("round 1"), "{text}");

    // The reviewer's labels are the ground truth of the chosen frames.
    let seed = work.join("seed-1");
    let pool = seed.join("uncertain/pool/Annotations");
    let truth = seed.join("round-1/truth/Annotations");
    let labelled: Vec<String> = files(&pool).into_iter().filter(|n| n.starts_with("r1-")).collect();
    assert_eq!(labelled.len(), 10, "{labelled:?}");
    for name in &labelled {
        let original = name.trim_start_matches("r1-");
        let ours = std::fs::read_to_string(pool.join(name)).unwrap();
        let theirs = std::fs::read_to_string(truth.join(original)).unwrap();
        let id = original.trim_end_matches(".xml");
        let expected = theirs
            .replace(&format!("<filename>{id}.jpg"), &format!("<filename>r1-{id}.jpg"))
            .replace(
                "<segmented>0</segmented>",
                "<segmented>0</segmented>\n  <reviewed>1</reviewed>",
            );
        assert_eq!(ours, expected, "{name}");
    }
    let _ = std::fs::remove_dir_all(&work);
}
