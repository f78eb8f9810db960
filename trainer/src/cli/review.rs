//! `review`: captures out to a labelling tool and the reviewed boxes back (Label Studio over HTTP, CVAT files).

use clap::Subcommand;
use mobilenet_trainer::review::label_studio::{self, LabelStudio};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Subcommand)]
pub enum ReviewAction {
    /// Write every sample's boxes (with their confidence and review marks as attributes) into one CVAT file;
    /// samples awaiting review first. Upload the folder's JPEGImages/ to a CVAT task and import the file there.
    ExportCvat {
        /// A Pascal VOC folder.
        #[arg(long)]
        data: PathBuf,
        #[arg(long)]
        output: PathBuf,
    },
    /// Read a reviewed CVAT for images 1.1 file back: samples whose boxes changed are rewritten (marked
    /// <reviewed>1</reviewed>), untouched ones stay as they are. Clear a box's review attribute to confirm it.
    ImportCvat {
        #[arg(long)]
        data: PathBuf,
        #[arg(long)]
        input: PathBuf,
    },
    /// Make (or update) a Label Studio project of the captures: images uploaded most uncertain first, the boxes
    /// as predictions (scores kept, boxes awaiting review flagged). Pushing again adds only new samples.
    Push {
        #[command(flatten)]
        at: LabelStudioArgs,
    },
    /// Write the project's submitted annotations back: each submitted sample is marked <reviewed>1</reviewed>
    /// (its boxes rewritten where they changed, review marks cleared); skipped and unannotated tasks leave their
    /// samples alone.
    Pull {
        #[command(flatten)]
        at: LabelStudioArgs,
    },
}

#[derive(clap::Args)]
pub struct LabelStudioArgs {
    /// A Pascal VOC folder or s3://BUCKET/PREFIX (pull uploads the rewritten annotations there).
    #[arg(long)]
    pub data: PathBuf,
    /// Label Studio's address, e.g. http://localhost:8080.
    #[arg(long, env = "LABEL_STUDIO_URL")]
    pub url: String,
    /// A personal access token (Account & Settings), or a legacy token.
    #[arg(long, env = "LABEL_STUDIO_API_KEY", hide_env_values = true)]
    pub token: String,
    /// The project's title (3 to 50 characters); default: the data folder's name.
    #[arg(long)]
    pub project: Option<String>,
}

impl LabelStudioArgs {
    /// The project's title, the server (token checked) and the local folder of `--data` (an s3:// pool mirrored).
    fn open(&self) -> Result<(String, LabelStudio, PathBuf), String> {
        let title = label_studio::project_title(self.project.as_deref(), &self.data.to_string_lossy())?;
        let server = LabelStudio::connect(&self.url, &self.token)?;
        let dir = mobilenet_trainer::remote::resolve_data(std::slice::from_ref(&self.data))?.remove(0);
        Ok((title, server, dir))
    }
}

impl ReviewAction {
    pub fn run(self) -> ExitCode {
        match outcome(self) {
            Ok(line) => {
                eprintln!("{line}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        }
    }
}

fn outcome(action: ReviewAction) -> Result<String, String> {
    use mobilenet_trainer::review::cvat;
    match action {
        ReviewAction::ExportCvat { data, output } => {
            cvat::export_cvat(&data, &output).map(|n| format!("wrote {n} images' boxes to {}", output.display()))
        }
        ReviewAction::ImportCvat { data, input } => cvat::import_cvat(&data, &input).map(|r| r.to_string()),
        ReviewAction::Push { at } => {
            let (title, mut server, dir) = at.open()?;
            let r = label_studio::push(&dir, &mut server, &title)?;
            Ok(format!(
                "project '{title}' ({}/projects/{}){}: {} images uploaded, {} predictions written, {} unchanged",
                at.url.trim_end_matches('/'),
                r.project,
                if r.created { " created" } else { "" },
                r.uploaded,
                r.predictions,
                r.unchanged
            ))
        }
        ReviewAction::Pull { at } => {
            let (title, mut server, dir) = at.open()?;
            let mut publish = mobilenet_trainer::remote::annotation_publisher(&at.data)?;
            label_studio::pull(&dir, &mut server, &title, &mut publish).map(|r| r.to_string())
        }
    }
}
