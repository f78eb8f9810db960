//! Review in a real Label Studio (issue 21, item 2), started on 127.0.0.1 with SQLite: `review push` makes a
//! project of a captured folder (most uncertain first, boxes as predictions with their scores, the box awaiting
//! review flagged); a reviewer, acting through Label Studio's HTTP API as its web page does, moves a box, deletes
//! a false positive, adds a missed object, confirms the flagged box, submits one image unchanged and skips one;
//! `review pull` brings exactly that back (1 px; the unchanged one only marked reviewed), leaves the skipped and
//! the untouched sample byte for byte, and a second pull (and a second push) changes nothing.
//! A capture pool in S3 (a real moto server) is pushed from and pulled into its bucket the same way.

use detection_common::voc::{Annotation, VocObject, parse_annotation, write_annotation};
use detection_storage::{Bucket, Overrides, S3Url};
use mobilenetdetect_testkit::servers::{LabelStudio, S3Server};
use mobilenetdetect_testkit::{output, trainer_binary};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::Command;

const W: u32 = 160;
const H: u32 = 120;

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("mobilenetdetect-review-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn object(name: &str, (x0, y0, x1, y1): (f32, f32, f32, f32), confidence: Option<f32>) -> VocObject {
    VocObject {
        name: name.into(),
        xmin: x0,
        ymin: y0,
        xmax: x1,
        ymax: y1,
        difficult: false,
        confidence,
        review: None,
    }
}

/// Six captured samples: img-0 a car (0.9), img-1 a person (0.8) and a false positive car (0.55), img-2 a person
/// (0.7) whose neighbour the detector missed, img-3 a box awaiting review (missed), img-4 to img-6 one box each.
fn write_dataset(dir: &Path) -> Vec<Vec<VocObject>> {
    for sub in ["Annotations", "JPEGImages"] {
        std::fs::create_dir_all(dir.join(sub)).unwrap();
    }
    std::fs::write(dir.join("labels.txt"), "BACKGROUND\nperson\ncar\n").unwrap();
    let mut missed = object("person", (100.0, 30.0, 130.0, 100.0), None);
    missed.review = Some("missed".into());
    let samples = vec![
        vec![object("car", (20.0, 40.0, 80.0, 90.0), Some(0.9))],
        vec![
            object("person", (10.0, 10.0, 40.0, 100.0), Some(0.8)),
            object("car", (90.0, 60.0, 150.0, 110.0), Some(0.55)),
        ],
        vec![object("person", (30.0, 20.0, 60.0, 110.0), Some(0.7))],
        vec![missed],
        vec![object("car", (5.0, 5.0, 50.0, 40.0), Some(0.95))],
        vec![object("person", (70.0, 10.0, 100.0, 90.0), Some(0.6))],
        vec![object("car", (60.0, 60.0, 120.0, 100.0), Some(0.99))],
    ];
    for (i, objects) in samples.iter().enumerate() {
        let id = format!("img-{i}");
        let img = image::RgbImage::from_fn(W, H, |x, y| {
            image::Rgb([(x * 3 + i as u32 * 40) as u8, (y * 2) as u8, 90])
        });
        img.save(dir.join("JPEGImages").join(format!("{id}.jpg"))).unwrap();
        let a = Annotation {
            filename: format!("{id}.jpg"),
            width: W,
            height: H,
            pts: None,
            reviewed: false,
            objects: objects.clone(),
        };
        std::fs::write(dir.join("Annotations").join(format!("{id}.xml")), write_annotation(&a)).unwrap();
    }
    samples
}

fn xml(dir: &Path, i: usize) -> String {
    std::fs::read_to_string(dir.join("Annotations").join(format!("img-{i}.xml"))).unwrap()
}

fn trainer(args: &[&str], server: &LabelStudio, data: &Path) -> (i32, String) {
    trainer_in(args, server, data.to_str().unwrap(), "captures-review", &[])
}

/// `mobilenet-trainer ARGS --data DATA --url … --project PROJECT` with the token in the environment, as a
/// script would pass it.
fn trainer_in(args: &[&str], server: &LabelStudio, data: &str, project: &str, env: &[(&str, String)]) -> (i32, String) {
    output(
        Command::new(trainer_binary())
            .args(args)
            .args(["--data", data, "--url", &server.url(), "--project", project])
            .env("LABEL_STUDIO_API_KEY", &server.token)
            .envs(env.iter().map(|(k, v)| (k, v))),
    )
}

/// The reviewer: Label Studio's HTTP API with the user's token, as its web page calls it.
struct Reviewer {
    http: reqwest::blocking::Client,
    url: String,
    access: String,
}

impl Reviewer {
    fn new(server: &LabelStudio) -> Reviewer {
        let http = reqwest::blocking::Client::new();
        let refreshed: Value = serde_json::from_str(
            &http
                .post(format!("{}/api/token/refresh/", server.url()))
                .header("Content-Type", "application/json")
                .body(json!({ "refresh": server.token }).to_string())
                .send()
                .unwrap()
                .text()
                .unwrap(),
        )
        .unwrap();
        Reviewer {
            http,
            url: server.url(),
            access: refreshed["access"].as_str().unwrap().to_string(),
        }
    }

    fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.url))
            .header("Authorization", format!("Bearer {}", self.access));
        if let Some(body) = body {
            request = request
                .header("Content-Type", "application/json")
                .body(body.to_string());
        }
        let answer = request.send().unwrap();
        let status = answer.status();
        let text = answer.text().unwrap();
        assert!(status.is_success(), "{path}: {status} {text}");
        serde_json::from_str(&text).unwrap_or(Value::Null)
    }
}

/// Pixel corners of a result region.
fn corners(region: &Value) -> (f32, f32, f32, f32) {
    let v = &region["value"];
    let f = |k: &str| v[k].as_f64().unwrap();
    let (x, y, w, h) = (f("x"), f("y"), f("width"), f("height"));
    let (iw, ih) = (W as f64 / 100.0, H as f64 / 100.0);
    (
        (x * iw) as f32,
        (y * ih) as f32,
        ((x + w) * iw) as f32,
        ((y + h) * ih) as f32,
    )
}

/// A box as (label, (xmin, ymin, xmax, ymax)).
type Expected<'a> = (&'a str, (f32, f32, f32, f32));

fn assert_boxes(dir: &Path, i: usize, expected: &[Expected]) {
    let a = parse_annotation(&xml(dir, i), Path::new("x")).unwrap();
    assert!(a.reviewed, "img-{i} should say it was reviewed:\n{}", xml(dir, i));
    assert_eq!(a.objects.len(), expected.len(), "img-{i}:\n{}", xml(dir, i));
    for (name, b) in expected {
        let found = a.objects.iter().any(|o| {
            o.name == *name
                && o.review.is_none()
                && [(o.xmin, b.0), (o.ymin, b.1), (o.xmax, b.2), (o.ymax, b.3)]
                    .iter()
                    .all(|(x, y)| (x - y).abs() <= 1.0)
        });
        assert!(found, "img-{i} lacks {name} {b:?}:\n{}", xml(dir, i));
    }
}

#[test]
fn a_reviewers_changes_in_label_studio_come_back_exactly_and_nothing_else_changes() {
    let root = tmp("label-studio");
    let Some(server) = LabelStudio::start(&root) else {
        return;
    };
    let data = root.join("captures");
    write_dataset(&data);
    let before: Vec<String> = (0..7).map(|i| xml(&data, i)).collect();

    let (code, out) = trainer(&["review", "push"], &server, &data);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("created: 7 images uploaded, 7 predictions written"),
        "{out}"
    );
    let reviewer = Reviewer::new(&server);
    let projects = reviewer.call(reqwest::Method::GET, "/api/projects?title=captures-review", None);
    let project = projects["results"][0]["id"].as_u64().unwrap();
    let listed = reviewer.call(
        reqwest::Method::GET,
        &format!("/api/tasks?project={project}&page_size=100"),
        None,
    );
    let tasks: Vec<(u64, String)> = listed["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            let name = t["data"]["image"]
                .as_str()
                .unwrap()
                .rsplit('-')
                .next()
                .unwrap()
                .to_string();
            (t["id"].as_u64().unwrap(), name)
        })
        .collect();
    // Label Studio lists tasks in upload order: the flagged sample, then the least confident.
    let order: Vec<&str> = tasks.iter().map(|(_, n)| n.as_str()).collect();
    assert_eq!(
        order,
        ["3.jpg", "1.jpg", "5.jpg", "2.jpg", "0.jpg", "4.jpg", "6.jpg"],
        "{listed}"
    );
    let task_of = |i: usize| tasks.iter().find(|(_, n)| *n == format!("{i}.jpg")).unwrap().0;
    let predictions = reviewer.call(
        reqwest::Method::GET,
        &format!("/api/predictions?project={project}"),
        None,
    );
    let prediction_of = |i: usize| {
        predictions
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["task"].as_u64() == Some(task_of(i)))
            .unwrap()
            .clone()
    };
    let p1 = prediction_of(1);
    assert_eq!(p1["score"].as_f64(), Some(0.55), "{p1}");
    assert_eq!(p1["result"][0]["score"].as_f64(), Some(0.8), "{p1}");
    let p3 = prediction_of(3);
    assert_eq!(p3["result"][0]["meta"]["text"][0], "review: missed", "{p3}");
    assert_eq!(p3["score"].as_f64(), Some(0.0), "{p3}");

    // Pushing again finds everything in place.
    let (code, out) = trainer(&["review", "push"], &server, &data);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("0 images uploaded, 0 predictions written, 7 unchanged"),
        "{out}"
    );

    // The reviewer starts from each prediction, as Label Studio's editor does.
    let submit = |i: usize, result: Value, cancelled: bool| {
        let body = json!({ "result": result, "was_cancelled": cancelled, "parent_prediction": prediction_of(i)["id"] });
        reviewer.call(
            reqwest::Method::POST,
            &format!("/api/tasks/{}/annotations", task_of(i)),
            Some(body),
        );
    };
    // img-0: the car moved 12 px right and 6 px down.
    let mut moved = prediction_of(0)["result"].clone();
    moved[0]["value"]["x"] = json!(moved[0]["value"]["x"].as_f64().unwrap() + 12.0 * 100.0 / W as f64);
    moved[0]["value"]["y"] = json!(moved[0]["value"]["y"].as_f64().unwrap() + 6.0 * 100.0 / H as f64);
    submit(0, moved, false);
    // img-1: the false positive car deleted.
    let mut kept = prediction_of(1)["result"].clone();
    kept.as_array_mut()
        .unwrap()
        .retain(|r| r["value"]["rectanglelabels"][0] == "person");
    assert_eq!(kept.as_array().unwrap().len(), 1);
    submit(1, kept, false);
    // img-2: the missed person drawn by hand (no score, a region id of the editor's own).
    let mut added = prediction_of(2)["result"].clone();
    added.as_array_mut().unwrap().push(json!({
        "id": "Xa9_3kQ", "from_name": "label", "to_name": "image", "type": "rectanglelabels",
        "original_width": W, "original_height": H, "image_rotation": 0,
        "value": { "x": 62.5, "y": 12.5, "width": 25.0, "height": 75.0, "rotation": 0, "rectanglelabels": ["person"] }
    }));
    submit(2, added, false);
    // img-3: the flagged box accepted as it is; img-4: skipped; img-5: submitted unchanged; img-6: not opened.
    submit(3, prediction_of(3)["result"].clone(), false);
    submit(4, prediction_of(4)["result"].clone(), true);
    submit(5, prediction_of(5)["result"].clone(), false);
    let drawn = corners(&prediction_of(0)["result"][0]);

    let (code, out) = trainer(&["review", "pull"], &server, &data);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("5 samples changed (marked reviewed), 0 unchanged"),
        "{out}"
    );
    assert!(
        (drawn.0 - 20.0).abs() < 0.01 && (drawn.3 - 90.0).abs() < 0.01,
        "{drawn:?}"
    );
    assert_boxes(&data, 0, &[("car", (32.0, 46.0, 92.0, 96.0))]);
    assert_boxes(&data, 1, &[("person", (10.0, 10.0, 40.0, 100.0))]);
    assert_boxes(
        &data,
        2,
        &[
            ("person", (30.0, 20.0, 60.0, 110.0)),
            ("person", (100.0, 15.0, 140.0, 105.0)),
        ],
    );
    assert_boxes(&data, 3, &[("person", (100.0, 30.0, 130.0, 100.0))]);
    // Submitted unchanged: only the mark is new. Skipped and untouched samples: byte for byte.
    let marked = before[5].replace(
        "<segmented>0</segmented>\n",
        "<segmented>0</segmented>\n  <reviewed>1</reviewed>\n",
    );
    assert_eq!(xml(&data, 5), marked);
    assert_eq!(xml(&data, 4), before[4]);
    assert_eq!(xml(&data, 6), before[6]);

    let after: Vec<String> = (0..7).map(|i| xml(&data, i)).collect();
    let (code, out) = trainer(&["review", "pull"], &server, &data);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("0 samples changed (marked reviewed), 5 unchanged"),
        "{out}"
    );
    assert_eq!((0..7).map(|i| xml(&data, i)).collect::<Vec<_>>(), after);

    // A wrong token is refused by name, and nothing is written.
    let (code, out) = output(
        Command::new(trainer_binary())
            .args([
                "review",
                "pull",
                "--data",
                data.to_str().unwrap(),
                "--url",
                &server.url(),
            ])
            .args([
                "--project",
                "captures-review",
                "--token",
                "0123456789abcdef0123456789abcdef01234567",
            ]),
    );
    assert_ne!(code, 0, "{out}");
    assert!(out.contains("refused the token"), "{out}");
    assert_eq!((0..7).map(|i| xml(&data, i)).collect::<Vec<_>>(), after);

    // A capture pool in S3: pushed from the bucket, the reviewed annotation pulled back into it.
    let Some(s3) = S3Server::start(&root) else { return };
    s3.create_bucket("fleet");
    let overrides = Overrides {
        endpoint: Some(s3.endpoint()),
        region: Some("us-east-1".into()),
        access_key: Some("fleet-test".into()),
        secret_access_key: Some("fleet-test-secret".into()),
        session_token: None,
    };
    let pool = S3Url::parse("s3://fleet/captures").unwrap();
    let bucket = Bucket::open_url(&pool, &overrides).unwrap();
    let fresh = root.join("pool");
    write_dataset(&fresh);
    for sub in ["Annotations", "JPEGImages"] {
        for entry in std::fs::read_dir(fresh.join(sub)).unwrap() {
            let path = entry.unwrap().path();
            let key = pool.child(&format!("{sub}/{}", path.file_name().unwrap().to_string_lossy()));
            bucket.put(&key, std::fs::read(&path).unwrap()).unwrap();
        }
    }
    bucket
        .put(
            &pool.child("labels.txt"),
            std::fs::read(fresh.join("labels.txt")).unwrap(),
        )
        .unwrap();
    let mut env = s3.env();
    env.push(("XDG_CACHE_HOME", root.join("cache").to_string_lossy().into_owned()));
    let (code, out) = trainer_in(&["review", "push"], &server, "s3://fleet/captures", "pool-review", &env);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("created: 7 images uploaded"), "{out}");
    let projects = reviewer.call(reqwest::Method::GET, "/api/projects?title=pool-review", None);
    let pool_project = projects["results"][0]["id"].as_u64().unwrap();
    let listed = reviewer.call(
        reqwest::Method::GET,
        &format!("/api/tasks?project={pool_project}"),
        None,
    );
    let first = &listed["tasks"][0];
    assert!(
        first["data"]["image"].as_str().unwrap().ends_with("-img-3.jpg"),
        "{first}"
    );
    let body = json!({ "result": [], "was_cancelled": false });
    reviewer.call(
        reqwest::Method::POST,
        &format!("/api/tasks/{}/annotations", first["id"]),
        Some(body),
    );
    let (code, out) = trainer_in(&["review", "pull"], &server, "s3://fleet/captures", "pool-review", &env);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("1 samples changed"), "{out}");
    let (bytes, _) = bucket.get(&pool.child("Annotations/img-3.xml")).unwrap();
    let a = parse_annotation(&String::from_utf8(bytes).unwrap(), Path::new("img-3.xml")).unwrap();
    assert!(a.reviewed && a.objects.is_empty(), "{a:?}");
    let _ = std::fs::remove_dir_all(&root);
}
