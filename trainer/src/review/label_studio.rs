//! Review in Label Studio over its HTTP API. `review push` makes (or updates) a project whose tasks are a folder's
//! images, uploaded most uncertain first (Label Studio lists tasks in upload order), each with the sample's boxes
//! as a prediction: the detector's scores kept, boxes awaiting review flagged in their meta text, the task's score
//! the sample's lowest confidence (0 when a box awaits review) so the Data Manager can sort by it. Pushing again
//! uploads only new samples and replaces a prediction only where the sample's boxes changed.
//!
//! `review pull` reads the latest submitted annotation of each task: a submitted annotation is the reviewer's
//! verdict on the whole image, so its boxes are written without review marks and the sample is marked reviewed
//! (also when the reviewer changed nothing); skipped tasks and tasks nobody annotated leave their samples as they
//! were.

use super::{Imported, Publish, by_file, check_box, open, review_order, write_back};
use detection_common::label_studio::{self as ls, Region};
use detection_common::voc::{Sample, VocObject};
use reqwest::Method;
use reqwest::blocking::{Client, multipart};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

/// The prediction's model version: ours are the ones a push replaces.
const MODEL_VERSION: &str = "mobilenetdetect-capture";
const PAGE: usize = 100;

/// A Label Studio server and the token to act with.
pub struct LabelStudio {
    url: String,
    http: Client,
    token: String,
    /// With a personal access token (a JWT refresh token): the short-lived access token it was exchanged for.
    access: Option<String>,
}

enum Body {
    Empty,
    Json(Value),
    File { name: String, bytes: Vec<u8> },
}

impl LabelStudio {
    /// A server at `url` (e.g. `http://localhost:8080`) and a token from Account & Settings: a personal access
    /// token or a legacy token. Checks both by listing projects, so a wrong URL or token fails here.
    pub fn connect(url: &str, token: &str) -> Result<Self, String> {
        let http = Client::builder()
            .timeout(Duration::from_secs(120))
            .build()
            .map_err(|e| format!("cannot make an HTTP client: {e}"))?;
        let mut server = LabelStudio {
            url: url.trim_end_matches('/').to_string(),
            http,
            token: token.trim().to_string(),
            access: None,
        };
        server.call(Method::GET, "/api/projects?page_size=1", Body::Empty)?;
        Ok(server)
    }

    /// Personal access tokens are JWTs; legacy tokens are 40 hex digits.
    fn is_personal(&self) -> bool {
        self.token.starts_with("eyJ") && self.token.matches('.').count() == 2
    }

    fn refresh(&mut self) -> Result<(), String> {
        let url = format!("{}/api/token/refresh/", self.url);
        let body = json!({ "refresh": self.token }).to_string();
        let answer = self
            .http
            .post(&url)
            .header("Content-Type", "application/json")
            .body(body)
            .send()
            .map_err(|e| self.unreachable(e))?;
        let status = answer.status();
        let text = answer.text().unwrap_or_default();
        let access = serde_json::from_str::<Value>(&text)
            .ok()
            .and_then(|v| v["access"].as_str().map(String::from));
        match access {
            Some(a) if status.is_success() => {
                self.access = Some(a);
                Ok(())
            }
            _ => Err(format!(
                "Label Studio at {} refused the personal access token ({status}: {}): copy a current one from \
                 Account & Settings > Personal Access Token",
                self.url,
                text.chars().take(200).collect::<String>()
            )),
        }
    }

    fn unreachable(&self, e: reqwest::Error) -> String {
        format!(
            "cannot reach Label Studio at {}: {e} (is it running? check --url)",
            self.url
        )
    }

    fn send(&self, method: &Method, path: &str, body: &Body) -> Result<reqwest::blocking::Response, String> {
        let authorization = match &self.access {
            Some(access) => format!("Bearer {access}"),
            None => format!("Token {}", self.token),
        };
        let mut request = self
            .http
            .request(method.clone(), format!("{}{path}", self.url))
            .header("Authorization", authorization);
        request = match body {
            Body::Empty => request,
            Body::Json(v) => request.header("Content-Type", "application/json").body(v.to_string()),
            Body::File { name, bytes } => {
                let part = multipart::Part::bytes(bytes.clone())
                    .file_name(name.clone())
                    .mime_str("image/jpeg")
                    .map_err(|e| e.to_string())?;
                request.multipart(multipart::Form::new().part("file", part))
            }
        };
        request.send().map_err(|e| self.unreachable(e))
    }

    /// One API call; JSON back (null for an empty answer). A personal access token is exchanged for an access
    /// token first, and again when that expires (they live minutes).
    fn call(&mut self, method: Method, path: &str, body: Body) -> Result<Value, String> {
        if self.is_personal() && self.access.is_none() {
            self.refresh()?;
        }
        let mut answer = self.send(&method, path, &body)?;
        if answer.status() == reqwest::StatusCode::UNAUTHORIZED && self.is_personal() {
            self.refresh()?;
            answer = self.send(&method, path, &body)?;
        }
        let status = answer.status();
        let text = answer.text().unwrap_or_default();
        if status == reqwest::StatusCode::UNAUTHORIZED || status == reqwest::StatusCode::FORBIDDEN {
            return Err(format!(
                "Label Studio at {} refused the token ({status}): {} (use a personal access token from Account & \
                 Settings, or a legacy token where the organization enables them)",
                self.url,
                text.chars().take(300).collect::<String>()
            ));
        }
        if !status.is_success() {
            return Err(format!(
                "Label Studio at {}: {method} {path} answered {status}: {}",
                self.url,
                text.chars().take(500).collect::<String>()
            ));
        }
        if text.trim().is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_str(&text)
            .map_err(|e| format!("Label Studio at {}: {method} {path}: not JSON ({e})", self.url))
    }

    fn find_project(&mut self, title: &str) -> Result<Option<Value>, String> {
        let found = self.call(
            Method::GET,
            &format!("/api/projects?title={}&page_size=100", encode(title)),
            Body::Empty,
        )?;
        let projects = found["results"].as_array().cloned().unwrap_or_default();
        Ok(projects.into_iter().find(|p| p["title"] == title))
    }

    /// Every task of a project.
    fn tasks(&mut self, project: u64) -> Result<Vec<Value>, String> {
        let mut tasks = Vec::new();
        for page in 1.. {
            let path = format!("/api/tasks?project={project}&page={page}&page_size={PAGE}");
            let mut answer = self.call(Method::GET, &path, Body::Empty)?;
            let total = answer["total"].as_u64().unwrap_or(0) as usize;
            let batch = match answer["tasks"].take() {
                Value::Array(batch) => batch,
                _ => Vec::new(),
            };
            let short = batch.len() < PAGE;
            tasks.extend(batch);
            if short || tasks.len() >= total {
                break;
            }
        }
        Ok(tasks)
    }
}

/// Percent-encodes a query value.
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The project title for a folder: `--project`, else the folder's name; Label Studio wants 3 to 50 characters.
pub fn project_title(project: Option<&str>, data: &str) -> Result<String, String> {
    let title = match project {
        Some(p) => p.to_string(),
        None => data
            .trim_end_matches('/')
            .rsplit('/')
            .next()
            .unwrap_or_default()
            .to_string(),
    };
    let n = title.chars().count();
    if !(3..=50).contains(&n) {
        return Err(format!(
            "'{title}' cannot be a Label Studio project title (3 to 50 characters): pass --project NAME"
        ));
    }
    Ok(title)
}

/// A file name as a task's key.
fn task_ids(tasks: &[Value]) -> BTreeMap<String, u64> {
    tasks
        .iter()
        .filter_map(|t| Some((ls::task_file(t)?, t["id"].as_u64()?)))
        .collect()
}

fn regions_of(sample: &Sample) -> Vec<Region> {
    let objects = &sample.annotation.objects;
    objects
        .iter()
        .map(|o| Region {
            label: o.name.clone(),
            xmin: o.xmin,
            ymin: o.ymin,
            xmax: o.xmax,
            ymax: o.ymax,
            score: o.confidence,
            review: o.review.clone(),
        })
        .collect()
}

fn same_regions(a: &[Region], b: &[Region]) -> bool {
    let close = |x: f32, y: f32| (x - y).abs() < 1e-3;
    a.len() == b.len()
        && a.iter().zip(b).all(|(a, b)| {
            a.label == b.label
                && a.review == b.review
                && a.score.map(ls::decimal) == b.score.map(ls::decimal)
                && close(a.xmin, b.xmin)
                && close(a.ymin, b.ymin)
                && close(a.xmax, b.xmax)
                && close(a.ymax, b.ymax)
        })
}

/// What a push did.
#[derive(Debug, Default, PartialEq)]
pub struct Pushed {
    pub project: u64,
    pub created: bool,
    pub uploaded: usize,
    pub predictions: usize,
    pub unchanged: usize,
}

/// Makes (or updates) the project `title` from the folder `data`.
pub fn push(data: &Path, server: &mut LabelStudio, title: &str) -> Result<Pushed, String> {
    let dataset = open(data)?;
    let labels = dataset.labels.foreground().to_vec();
    let mut report = Pushed::default();
    let project = match server.find_project(title)? {
        Some(p) => {
            let offered = ls::config_labels(p["label_config"].as_str().unwrap_or_default());
            if labels.iter().any(|l| !offered.contains(l)) {
                let config = json!({ "label_config": ls::label_config(&labels) });
                server.call(Method::PATCH, &format!("/api/projects/{}", p["id"]), Body::Json(config))?;
            }
            p
        }
        None => {
            report.created = true;
            let description = format!(
                "Captures from {}, pushed by mobilenet-trainer review push",
                data.display()
            );
            let body = json!({ "title": title, "description": description, "label_config": ls::label_config(&labels) });
            server.call(Method::POST, "/api/projects", Body::Json(body))?
        }
    };
    report.project = project["id"]
        .as_u64()
        .ok_or("Label Studio answered a project without an id")?;
    let samples = review_order(&dataset);

    let present = task_ids(&server.tasks(report.project)?);
    let new: Vec<&&Sample> = samples
        .iter()
        .filter(|s| !present.contains_key(&s.annotation.filename))
        .collect();
    let mut last_report = Instant::now();
    for (i, sample) in new.iter().enumerate() {
        let bytes = std::fs::read(&sample.image).map_err(|e| format!("cannot read {}: {e}", sample.image.display()))?;
        let name = sample.annotation.filename.clone();
        server.call(
            Method::POST,
            &format!("/api/projects/{}/import", report.project),
            Body::File { name, bytes },
        )?;
        report.uploaded += 1;
        // A line every few seconds: a first push of a big capture takes minutes.
        if last_report.elapsed() >= Duration::from_secs(3) || i + 1 == new.len() {
            eprintln!("uploaded {}/{} images to project '{title}'", i + 1, new.len());
            last_report = Instant::now();
        }
    }
    // Label Studio answers an upload without its task ids: list again when something was uploaded.
    let tasks = if new.is_empty() {
        present
    } else {
        task_ids(&server.tasks(report.project)?)
    };

    let existing = server.call(
        Method::GET,
        &format!("/api/predictions?project={}", report.project),
        Body::Empty,
    )?;
    let mut ours: BTreeMap<u64, Vec<&Value>> = BTreeMap::new();
    for p in existing
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| p["model_version"] == MODEL_VERSION)
    {
        ours.entry(p["task"].as_u64().unwrap_or(0)).or_default().push(p);
    }
    for sample in &samples {
        let task = *tasks.get(&sample.annotation.filename).ok_or_else(|| {
            format!(
                "Label Studio made no task for {} (project '{title}')",
                sample.image.display()
            )
        })?;
        let a = &sample.annotation;
        let regions = regions_of(sample);
        let score = ls::decimal(if a.awaits_review() {
            0.0
        } else {
            super::lowest_confidence(sample)
        });
        let old = ours.remove(&task).unwrap_or_default();
        // Compared as boxes, not as JSON: floats need not come back bit for bit.
        let same = |p: &&Value| {
            ls::regions(&p["result"], a.width, a.height).is_ok_and(|r| same_regions(&r, &regions))
                && p["score"].as_f64().is_some_and(|s| (s - score).abs() < 1e-6)
        };
        if old.len() == usize::from(!regions.is_empty()) && old.iter().all(same) {
            report.unchanged += 1;
            continue;
        }
        for p in old {
            server.call(Method::DELETE, &format!("/api/predictions/{}", p["id"]), Body::Empty)?;
        }
        if !regions.is_empty() {
            let result = ls::result(&regions, a.width, a.height);
            let body = json!({ "task": task, "model_version": MODEL_VERSION, "score": score, "result": result });
            server.call(Method::POST, "/api/predictions", Body::Json(body))?;
            report.predictions += 1;
        }
    }
    Ok(report)
}

/// The latest submitted (not skipped) annotation of a task.
fn latest_annotation(task: &Value) -> Option<&Value> {
    let annotations = task["annotations"].as_array()?;
    annotations
        .iter()
        .filter(|a| a["was_cancelled"] != true)
        .max_by_key(|a| {
            (
                a["updated_at"].as_str().unwrap_or_default().to_string(),
                a["id"].as_u64(),
            )
        })
}

/// Writes the reviewed annotations of the project `title` into the folder `data`; `publish` is handed each
/// changed annotation (its sample id and XML) before it is written locally (an s3:// dataset uploads it there).
pub fn pull(data: &Path, server: &mut LabelStudio, title: &str, publish: &mut Publish) -> Result<Imported, String> {
    let dataset = open(data)?;
    let project = server.find_project(title)?.ok_or_else(|| {
        format!(
            "Label Studio at {} has no project '{title}': run review push first (or pass --project)",
            server.url
        )
    })?;
    let path = format!(
        "/api/projects/{}/export?exportType=JSON&download_all_tasks=false",
        project["id"]
    );
    let tasks = server.call(Method::GET, &path, Body::Empty)?;
    let by_file = by_file(&dataset);
    let mut reviewed = Vec::new();
    for task in tasks.as_array().into_iter().flatten() {
        let Some(annotation) = latest_annotation(task) else {
            continue;
        };
        let source = format!("Label Studio project '{title}', task {}", task["id"]);
        let file = ls::task_file(task).ok_or_else(|| format!("{source}: no image file name"))?;
        let sample = by_file
            .get(file.as_str())
            .ok_or_else(|| format!("{source}: image {file} is not a sample of {}", data.display()))?;
        let a = &sample.annotation;
        let regions =
            ls::regions(&annotation["result"], a.width, a.height).map_err(|e| format!("{source} ({file}): {e}"))?;
        let objects: Vec<VocObject> = regions
            .into_iter()
            .map(|r| VocObject {
                name: r.label,
                xmin: r.xmin,
                ymin: r.ymin,
                xmax: r.xmax,
                ymax: r.ymax,
                difficult: false,
                confidence: r.score,
                review: None,
            })
            .collect();
        for o in &objects {
            check_box(&dataset, data, &source, sample, o)?;
        }
        reviewed.push((*sample, objects));
    }
    write_back(data, reviewed, true, publish)
}
