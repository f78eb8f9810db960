//! `rollout`: where a canary release stands, and promoting or rolling back its candidate.

use clap::Subcommand;
use detection_common::release::{Decision, Rules, Verdict, judge};
use mobilenet_trainer::rollout;
use std::process::ExitCode;
use std::time::{Duration, Instant};

#[derive(Subcommand)]
pub enum RolloutAction {
    /// The manifest, every device's latest verdict, and the decision they support; with --auto, carry it out.
    Status(StatusArgs),
    /// Release the candidate to every device (latest.onnx follows).
    Promote {
        #[command(flatten)]
        at: ModelsArg,
    },
    /// Send every device back to the stable model; the candidate is recorded as rolled back.
    Rollback {
        #[command(flatten)]
        at: ModelsArg,
    },
}

#[derive(clap::Args)]
pub struct ModelsArg {
    /// s3://BUCKET/PREFIX of the fleet's models (where publish wrote release.json).
    #[arg(long)]
    pub models: String,
}

#[derive(clap::Args)]
pub struct StatusArgs {
    #[command(flatten)]
    at: ModelsArg,
    /// Where the devices publish verdicts: the `verdicts=mqtt://HOST[:PORT]/TOPIC` of their mobilenetdetect.
    #[arg(long)]
    verdicts: Option<String>,
    /// Promote or roll back when the verdicts decide it.
    #[arg(long)]
    auto: bool,
    /// Look again every second for up to this many seconds until the verdicts decide.
    #[arg(long, default_value_t = 0)]
    wait: u64,
    /// Shadow frames a canary needs before its verdict counts.
    #[arg(long, default_value_t = Rules::default().min_shadow_frames)]
    min_shadow_frames: u64,
    /// Canaries with enough shadow frames needed to promote.
    #[arg(long, default_value_t = Rules::default().min_canaries)]
    min_canaries: usize,
    /// Lowest agreement (box F1 at IoU 0.5, same label) of the candidate with the stable model.
    #[arg(long, default_value_t = Rules::default().min_agreement)]
    min_agreement: f64,
    /// Highest p95 inference time of the candidate over the stable model's on the same device.
    #[arg(long, default_value_t = Rules::default().max_latency_ratio)]
    max_latency_ratio: f64,
}

impl RolloutAction {
    pub fn run(self) -> ExitCode {
        let result = match self {
            RolloutAction::Status(args) => args.run(),
            RolloutAction::Promote { at } => rollout::promote(&at.models, None).map(|m| {
                eprintln!("promoted {m}: every device runs it from its next watch interval");
            }),
            RolloutAction::Rollback { at } => rollout::rollback(&at.models, None).map(|m| {
                eprintln!("rolled back {m}: every device runs the stable model from its next watch interval");
            }),
        };
        match result {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        }
    }
}

fn describe(v: &Verdict) -> String {
    let opt = |x: Option<f64>, digits: usize| x.map_or("-".into(), |x| format!("{x:.digits$}"));
    format!(
        "{:<16} {:<7} {:<36} frames {:>6}  det/inf {:>5.2}  shadow {:>4} agreement {:>4}  p95 {} ms (stable {} ms)  errors {} (stable {})  non-finite {}",
        v.device,
        if v.canary { "canary" } else { "stable" },
        v.model,
        v.frames,
        v.detections_per_inference,
        v.shadow_frames,
        opt(v.agreement, 2),
        opt(v.p95_ms, 1),
        opt(v.stable_p95_ms, 1),
        v.errors,
        v.stable_errors,
        v.nonfinite
    )
}

impl StatusArgs {
    fn run(self) -> Result<(), String> {
        let rules = Rules {
            min_shadow_frames: self.min_shadow_frames,
            min_canaries: self.min_canaries,
            min_agreement: self.min_agreement,
            max_latency_ratio: self.max_latency_ratio,
        };
        let models = &self.at.models;
        let until = Instant::now() + Duration::from_secs(self.wait);
        loop {
            let manifest = rollout::status(models)?;
            println!(
                "stable: {}\ncandidate: {} ({} % of devices, shadow 1 frame in {})",
                manifest.stable,
                manifest.candidate.as_deref().unwrap_or("none"),
                manifest.canary_percent,
                manifest.shadow_every
            );
            let verdicts = match &self.verdicts {
                Some(location) => rollout::read_verdicts(location, Duration::from_millis(1500))?,
                None => Vec::new(),
            };
            for v in &verdicts {
                println!("{}", describe(v));
            }
            let decision = if self.verdicts.is_none() {
                Decision::Wait("no --verdicts to judge by".into())
            } else {
                judge(&manifest, &verdicts, &rules)
            };
            match decision {
                Decision::Wait(why) if Instant::now() < until => {
                    println!("waiting: {why}");
                    std::thread::sleep(Duration::from_secs(1));
                }
                Decision::Wait(why) => {
                    println!("decision: wait ({why})");
                    return Ok(());
                }
                Decision::Promote(why) => {
                    println!("decision: promote ({why})");
                    if self.auto {
                        let m = rollout::promote(models, manifest.candidate.as_deref())?;
                        println!("promoted {m}");
                    }
                    return Ok(());
                }
                Decision::Rollback(reasons) => {
                    println!("decision: roll back\n  {}", reasons.join("\n  "));
                    if self.auto {
                        let m = rollout::rollback(models, manifest.candidate.as_deref())?;
                        println!("rolled back {m}");
                    }
                    return Ok(());
                }
            }
        }
    }
}
