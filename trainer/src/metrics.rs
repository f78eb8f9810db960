//! The training log: `OUT/metrics.csv` (one row per epoch) and its chart `OUT/metrics.png`, both rewritten
//! atomically, and kept consistent with the checkpoint when a run resumes.

use detection_common::files::write_atomically;
use std::path::{Path, PathBuf};

pub const HEADER: &str = "epoch,train_loss,val_map50,lr,seconds,images_per_second,frozen_backbone";

/// One row of metrics.csv.
#[derive(Debug, Clone, PartialEq)]
pub struct EpochMetrics {
    /// 0-based.
    pub epoch: usize,
    pub loss: f32,
    pub map: f32,
    pub lr: f64,
    pub seconds: f64,
    /// Training images per second (evaluation and feature caching excluded).
    pub images_per_second: f64,
    pub frozen_backbone: bool,
}

impl EpochMetrics {
    fn csv(&self) -> String {
        format!(
            "{},{:.5},{:.5},{:.6},{:.1},{:.2},{}",
            self.epoch, self.loss, self.map, self.lr, self.seconds, self.images_per_second, self.frozen_backbone
        )
    }

    fn parse(line: &str) -> Option<Self> {
        let f: Vec<&str> = line.split(',').collect();
        Some(Self {
            epoch: f.first()?.parse().ok()?,
            loss: f.get(1)?.parse().ok()?,
            map: f.get(2)?.parse().ok()?,
            lr: f.get(3).and_then(|v| v.parse().ok()).unwrap_or(0.0),
            seconds: f.get(4).and_then(|v| v.parse().ok()).unwrap_or(0.0),
            images_per_second: f.get(5).and_then(|v| v.parse().ok()).unwrap_or(0.0),
            frozen_backbone: f.get(6).is_some_and(|v| *v == "true"),
        })
    }
}

/// The rows of one training run, mirrored to `metrics.csv` and `metrics.png` in its output folder.
pub struct MetricsLog {
    csv: PathBuf,
    png: PathBuf,
    pub rows: Vec<EpochMetrics>,
}

impl MetricsLog {
    /// A new run: an empty log (header only).
    pub fn start(out: &Path) -> Result<Self, String> {
        let log = Self {
            csv: out.join("metrics.csv"),
            png: out.join("metrics.png"),
            rows: Vec::new(),
        };
        log.write()?;
        Ok(log)
    }

    /// A resumed run: the rows up to `last_epoch`, the epoch of the checkpoint it resumes from (later rows
    /// belong to an epoch whose checkpoint never landed).
    pub fn resume(out: &Path, last_epoch: usize) -> Result<Self, String> {
        let mut log = Self {
            csv: out.join("metrics.csv"),
            png: out.join("metrics.png"),
            rows: Vec::new(),
        };
        let text = std::fs::read_to_string(&log.csv).unwrap_or_default();
        log.rows = text
            .lines()
            .skip(1)
            .filter_map(EpochMetrics::parse)
            .filter(|r| r.epoch <= last_epoch)
            .collect();
        log.write()?;
        Ok(log)
    }

    /// The best validation mAP so far and its epoch ((-1, 0) before any).
    pub fn best(&self) -> (f32, usize) {
        self.rows
            .iter()
            .fold((-1f32, 0usize), |b, r| if r.map > b.0 { (r.map, r.epoch) } else { b })
    }

    /// Adds an epoch's row and rewrites the CSV and the chart.
    pub fn push(&mut self, row: EpochMetrics) -> Result<(), String> {
        self.rows.push(row);
        self.write()?;
        self.chart();
        Ok(())
    }

    fn write(&self) -> Result<(), String> {
        let mut text = format!("{HEADER}\n");
        for r in &self.rows {
            text += &r.csv();
            text.push('\n');
        }
        write_atomically(&self.csv, text.as_bytes()).map_err(|e| format!("cannot write {}: {e}", self.csv.display()))
    }

    fn chart(&self) {
        let loss: Vec<(usize, f32)> = self.rows.iter().map(|r| (r.epoch + 1, r.loss)).collect();
        let map: Vec<(usize, f32)> = self.rows.iter().map(|r| (r.epoch + 1, r.map)).collect();
        // The chart is a convenience: a missing font must not stop training.
        if let Err(e) = crate::plot::metrics_chart(&self.png, &loss, &map) {
            eprintln!("warning: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(epoch: usize, map: f32) -> EpochMetrics {
        EpochMetrics {
            epoch,
            loss: 1.5,
            map,
            lr: 0.001,
            seconds: 12.0,
            images_per_second: 40.0,
            frozen_backbone: true,
        }
    }

    #[test]
    fn resuming_keeps_the_rows_up_to_the_checkpoint() {
        let dir = std::env::temp_dir().join(format!("trainer-metrics-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut log = MetricsLog::start(&dir).unwrap();
        for (e, m) in [(0, 0.2), (1, 0.5), (2, 0.4)] {
            log.rows.push(row(e, m));
        }
        log.write().unwrap();
        let resumed = MetricsLog::resume(&dir, 1).unwrap();
        assert_eq!(resumed.rows, vec![row(0, 0.2), row(1, 0.5)]);
        assert_eq!(resumed.best(), (0.5, 1));
        let text = std::fs::read_to_string(dir.join("metrics.csv")).unwrap();
        assert_eq!(text.lines().next(), Some(HEADER));
        assert_eq!(text.lines().count(), 3);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
