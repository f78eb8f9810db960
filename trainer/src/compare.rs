//! `compare` and the gate in front of `publish`: two models scored on one regression set, class by class, and
//! the rule that says whether the candidate may replace the baseline.

use crate::data::Merged;
use crate::evaluate::{Detector, Report, evaluate_samples};
use detection_common::labels::Labels;
use detection_common::voc::Sample;
use std::path::{Path, PathBuf};

/// How much worse a candidate may score and still pass.
#[derive(Debug, Clone, Copy, PartialEq, clap::Args)]
pub struct Tolerance {
    /// The largest drop of mAP@0.5 a candidate may have.
    #[arg(long = "tolerance", default_value_t = 0.01)]
    pub map: f32,
    /// The largest drop of any one class's AP@0.5.
    #[arg(long = "class-tolerance", default_value_t = 0.05)]
    pub class: f32,
}

impl Default for Tolerance {
    fn default() -> Self {
        Self { map: 0.01, class: 0.05 }
    }
}

/// One class's AP@0.5 under both models (`None`: the class has no objects nor detections for that model).
#[derive(Debug, Clone, PartialEq)]
pub struct ClassDelta {
    pub label: String,
    pub baseline: Option<f32>,
    pub candidate: Option<f32>,
}

impl ClassDelta {
    /// A class the candidate no longer detects at all counts as AP 0.
    pub fn delta(&self) -> f32 {
        self.candidate.unwrap_or(0.0) - self.baseline.unwrap_or(0.0)
    }
}

/// Both models' scores on the same images.
#[derive(Debug, Clone)]
pub struct Comparison {
    pub baseline_model: PathBuf,
    pub candidate_model: PathBuf,
    pub baseline: Report,
    pub candidate: Report,
    pub baseline_labels: Labels,
    pub candidate_labels: Labels,
}

impl Comparison {
    /// Runs both models (checkpoints or ONNX files, on the CPU) over `samples`.
    pub fn run(baseline: &Path, candidate: &Path, samples: &[Sample], labels: &Labels) -> Result<Self, String> {
        let device = crate::device::cpu();
        let (mut baseline_detector, mut candidate_detector) =
            (Detector::open(baseline, &device)?, Detector::open(candidate, &device)?);
        let (baseline_labels, candidate_labels) =
            (baseline_detector.labels().clone(), candidate_detector.labels().clone());
        let score = |detector: &mut Detector, path: &Path, role: &str| {
            eprintln!("scoring the {role} {} on {} images", path.display(), samples.len());
            evaluate_samples(detector, samples, labels).map_err(|e| {
                // A model that cannot even be scored on the data: its label list is the news, if it differs.
                let (b, c) = (baseline.display().to_string(), candidate.display().to_string());
                labels_mismatch(&baseline_labels, &b, &candidate_labels, &c).unwrap_or(e)
            })
        };
        let baseline_report = score(&mut baseline_detector, baseline, "baseline")?;
        let candidate_report = score(&mut candidate_detector, candidate, "candidate")?;
        Ok(Self {
            baseline: baseline_report,
            candidate: candidate_report,
            baseline_labels,
            candidate_labels,
            baseline_model: baseline.to_path_buf(),
            candidate_model: candidate.to_path_buf(),
        })
    }

    /// Every class either model reports, in the baseline's order and then the candidate's new ones.
    pub fn classes(&self) -> Vec<ClassDelta> {
        let mut out: Vec<ClassDelta> = self
            .baseline
            .classes
            .iter()
            .map(|c| ClassDelta {
                label: c.label.clone(),
                baseline: Some(c.ap50),
                candidate: None,
            })
            .collect();
        for c in &self.candidate.classes {
            match out.iter_mut().find(|d| d.label == c.label) {
                Some(d) => d.candidate = Some(c.ap50),
                None => out.push(ClassDelta {
                    label: c.label.clone(),
                    baseline: None,
                    candidate: Some(c.ap50),
                }),
            }
        }
        out
    }

    pub fn map_delta(&self) -> f32 {
        self.candidate.map50 - self.baseline.map50
    }

    /// Why the candidate fails `tolerance`, one sentence per reason; empty when it passes.
    pub fn regressions(&self, tolerance: &Tolerance) -> Vec<String> {
        let mut out: Vec<String> = labels_mismatch(
            &self.baseline_labels,
            &self.baseline_model.display().to_string(),
            &self.candidate_labels,
            &self.candidate_model.display().to_string(),
        )
        .into_iter()
        .collect();
        if -self.map_delta() > tolerance.map {
            out.push(format!(
                "mAP@0.5 falls from {:.4} to {:.4} ({:+.4}; tolerance {})",
                self.baseline.map50,
                self.candidate.map50,
                self.map_delta(),
                tolerance.map
            ));
        }
        for c in self.classes() {
            if -c.delta() > tolerance.class {
                out.push(format!(
                    "'{}' AP@0.5 falls from {:.4} to {:.4} ({:+.4}; tolerance {})",
                    c.label,
                    c.baseline.unwrap_or(0.0),
                    c.candidate.unwrap_or(0.0),
                    c.delta(),
                    tolerance.class
                ));
            }
        }
        out
    }

    pub fn table(&self, tolerance: &Tolerance) -> String {
        let cell = |v: Option<f32>| v.map_or_else(|| "-".to_string(), |v| format!("{v:.4}"));
        let mut out = format!(
            "{:<20} {:>9} {:>10} {:>8}\n",
            "AP@0.5", "baseline", "candidate", "delta"
        );
        for c in self.classes() {
            out += &format!(
                "{:<20} {:>9} {:>10} {:>+8.4}\n",
                c.label,
                cell(c.baseline),
                cell(c.candidate),
                c.delta()
            );
        }
        out += &format!(
            "{:<20} {:>9.4} {:>10.4} {:>+8.4}\n",
            "mAP@0.5",
            self.baseline.map50,
            self.candidate.map50,
            self.map_delta()
        );
        out += &format!(
            "{:<20} {:>9.4} {:>10.4} {:>+8.4}\n",
            "mAP@[.5:.95]",
            self.baseline.map50_95,
            self.candidate.map50_95,
            self.candidate.map50_95 - self.baseline.map50_95
        );
        out += &format!(
            "baseline {}, candidate {}, {} images\n",
            self.baseline_model.display(),
            self.candidate_model.display(),
            self.baseline.images
        );
        let regressions = self.regressions(tolerance);
        if regressions.is_empty() {
            out += "verdict: the candidate passes\n";
        } else {
            out += &format!("verdict: the candidate is worse: {}\n", regressions.join("; "));
        }
        out
    }

    pub fn json(&self, tolerance: &Tolerance) -> String {
        let side = |path: &Path, r: &Report| serde_json::json!({ "model": path.display().to_string(), "map50": r.map50, "map50_95": r.map50_95 });
        let classes: Vec<serde_json::Value> = self
            .classes()
            .iter()
            .map(|c| {
                serde_json::json!({
                    "label": c.label, "baseline": c.baseline, "candidate": c.candidate, "delta": c.delta(),
                })
            })
            .collect();
        let regressions = self.regressions(tolerance);
        serde_json::json!({
            "images": self.baseline.images,
            "baseline": side(&self.baseline_model, &self.baseline),
            "candidate": side(&self.candidate_model, &self.candidate),
            "classes": classes,
            "map50_delta": self.map_delta(),
            "tolerance": { "map50": tolerance.map, "class_ap50": tolerance.class },
            "passes": regressions.is_empty(),
            "regressions": regressions,
        })
        .to_string()
    }
}

/// Why a model with `candidate` labels cannot replace one with the fleet's `fleet` labels: devices name
/// detections by class id, so the lists must be equal, in order.
pub fn labels_mismatch(fleet: &Labels, fleet_model: &str, candidate: &Labels, candidate_model: &str) -> Option<String> {
    (fleet.foreground() != candidate.foreground()).then(|| {
        format!(
            "{candidate_model} has the labels [{}] but the fleet's model {fleet_model} has [{}]: devices would name \
             its classes wrongly (train with the fleet's label list, or pass --force if the fleet's pipelines \
             expect the new list)",
            candidate.foreground().join(", "),
            fleet.foreground().join(", ")
        )
    })
}

/// What stands between a trained model and the model it would replace.
pub struct Gate<'a> {
    /// The regression set (every image of it); without one only the labels are checked.
    pub data: Option<&'a Merged>,
    pub tolerance: Tolerance,
    /// Let the candidate through anyway, saying why it would have been refused.
    pub force: bool,
}

/// Whether `candidate` may replace `current` (named `current_name` in messages): the labels must be the same
/// list and, with a regression set, the candidate must score within the tolerances. The comparison is printed.
pub fn admit(candidate: &Path, current: &Path, current_name: &str, gate: &Gate) -> Result<(), String> {
    let labels_of = |path: &Path| Detector::open(path, &crate::device::cpu()).map(|d| d.labels().clone());
    let candidate_name = candidate.display().to_string();
    let mut reasons: Vec<String> = labels_mismatch(
        &labels_of(current)?,
        current_name,
        &labels_of(candidate)?,
        &candidate_name,
    )
    .into_iter()
    .collect();
    // Scores only mean something between models that name their classes alike.
    if let (Some(data), true) = (gate.data, reasons.is_empty()) {
        let mut comparison = Comparison::run(current, candidate, &data.samples, &data.labels)?;
        comparison.baseline_model = PathBuf::from(current_name);
        eprint!("{}", comparison.table(&gate.tolerance));
        reasons = comparison.regressions(&gate.tolerance);
    }
    if reasons.is_empty() {
        return Ok(());
    }
    if gate.force {
        eprintln!("warning: {}; going ahead anyway (--force)", reasons.join("; "));
        return Ok(());
    }
    Err(format!(
        "{candidate_name} may not replace {current_name}: {} (--force overrides)",
        reasons.join("; ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::evaluate::ClassReport;

    fn report(map50: f32, classes: &[(&str, f32)]) -> Report {
        Report {
            images: 10,
            map50,
            map50_95: map50 / 2.0,
            classes: classes
                .iter()
                .map(|&(label, ap50)| ClassReport {
                    label: label.into(),
                    ap50,
                    ap50_95: ap50 / 2.0,
                    objects: 5,
                    detections: 5,
                    curve: Vec::new(),
                })
                .collect(),
            tracking: None,
        }
    }

    fn comparison(baseline: Report, candidate: Report) -> Comparison {
        Comparison {
            baseline_model: "a.onnx".into(),
            candidate_model: "b.onnx".into(),
            baseline,
            candidate,
            baseline_labels: Labels::parse("stop\nyield\n"),
            candidate_labels: Labels::parse("stop\nyield\n"),
        }
    }

    #[test]
    fn a_class_that_falls_fails_even_when_the_mean_holds() {
        let c = comparison(
            report(0.80, &[("stop", 0.90), ("yield", 0.70)]),
            report(0.80, &[("stop", 0.97), ("yield", 0.63)]),
        );
        let r = c.regressions(&Tolerance::default());
        assert_eq!(r.len(), 1, "{r:?}");
        assert!(r[0].contains("'yield'"), "{r:?}");
        // Within both tolerances: passes.
        let c = comparison(report(0.80, &[("stop", 0.90)]), report(0.795, &[("stop", 0.86)]));
        assert!(c.regressions(&Tolerance::default()).is_empty());
        assert!(c.table(&Tolerance::default()).contains("verdict: the candidate passes"));
    }

    #[test]
    fn a_lower_mean_fails_and_a_class_the_candidate_lost_counts_as_zero() {
        let c = comparison(
            report(0.80, &[("stop", 0.90), ("yield", 0.70)]),
            report(0.45, &[("stop", 0.90)]),
        );
        let r = c.regressions(&Tolerance::default());
        assert_eq!(r.len(), 2, "{r:?}");
        assert!(r[0].starts_with("mAP@0.5 falls from 0.8000 to 0.4500"), "{r:?}");
        assert!(r[1].contains("'yield' AP@0.5 falls from 0.7000 to 0.0000"), "{r:?}");
        let json: serde_json::Value = serde_json::from_str(&c.json(&Tolerance::default())).unwrap();
        assert_eq!(json["passes"], false);
        assert_eq!(json["classes"][1]["candidate"], serde_json::Value::Null);
    }

    #[test]
    fn permuted_labels_are_named_on_both_sides() {
        let fleet = Labels::parse("stop\nyield\n");
        let permuted = Labels::parse("yield\nstop\n");
        let e = labels_mismatch(&fleet, "latest.onnx", &permuted, "new.onnx").unwrap();
        assert!(
            e.contains("[yield, stop]") && e.contains("[stop, yield]") && e.contains("latest.onnx"),
            "{e}"
        );
        assert!(labels_mismatch(&fleet, "a", &Labels::parse("BACKGROUND\nstop\nyield"), "b").is_none());
    }
}
