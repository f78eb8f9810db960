//! S3-compatible object storage (AWS S3, MinIO, Ceph, moto) for fleets: `s3://bucket/prefix` URLs, the usual
//! `AWS_*` environment variables with per-element overrides, and a blocking client for the threads that need
//! it (a capture writer, a model loader, the trainer), so no caller has to run an async runtime.
//!
//! Every upload is one PUT: S3 makes an object visible only once it is complete, so readers never see a
//! partial object. Multi-object units (an image and its annotation) are ordered by the callers so that the
//! object that makes the unit exist is written last.

pub mod mirror;

use futures::TryStreamExt;
use object_store::aws::{AmazonS3, AmazonS3Builder, AmazonS3ConfigKey};
use object_store::path::Path as ObjectPath;
use object_store::{ClientOptions, ObjectStore, RetryConfig};
use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Whether `location` names object storage rather than a local path.
pub fn is_s3(location: &str) -> bool {
    location.starts_with("s3://")
}

/// `s3://bucket/key-or-prefix`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Url {
    pub bucket: String,
    /// Without leading or trailing '/'; empty for the whole bucket.
    pub key: String,
}

impl S3Url {
    pub fn parse(url: &str) -> Result<Self, Error> {
        let bad = |why: &str| Error::new(url, ErrorKind::Invalid, format!("{why} (expected s3://BUCKET/PREFIX)"));
        let rest = url.strip_prefix("s3://").ok_or_else(|| bad("not an s3:// URL"))?;
        let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
        // S3's bucket naming rules: 3-63 characters of lower-case letters, digits, '.', '-'.
        let bucket_ok = (3..=63).contains(&bucket.len())
            && bucket
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-');
        if !bucket_ok {
            return Err(bad(
                "the bucket name must be 3-63 lower-case letters, digits, '.' or '-'",
            ));
        }
        let key = key.trim_matches('/');
        if key.split('/').any(|part| part == "." || part == "..") || key.contains("//") {
            return Err(bad("the key has an empty, '.' or '..' part"));
        }
        Ok(Self {
            bucket: bucket.into(),
            key: key.into(),
        })
    }

    /// The key of `name` under this prefix.
    pub fn child(&self, name: &str) -> String {
        if self.key.is_empty() {
            name.into()
        } else {
            format!("{}/{name}", self.key)
        }
    }
}

impl fmt::Display for S3Url {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "s3://{}/{}", self.bucket, self.key)
    }
}

/// Settings that override the `AWS_*` environment variables (an element's properties, a command's options).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Overrides {
    /// e.g. `http://127.0.0.1:9000` for MinIO or moto (AWS_ENDPOINT_URL).
    pub endpoint: Option<String>,
    /// AWS_REGION / AWS_DEFAULT_REGION; us-east-1 when neither is set.
    pub region: Option<String>,
    pub access_key: Option<String>,
    pub secret_access_key: Option<String>,
    pub session_token: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// A malformed URL or configuration.
    Invalid,
    NotFound,
    /// Network, server or credentials (a request that took too long included): may pass.
    Failed,
    /// Abandoned through the bucket's [`Cancel`] (its owner is stopping).
    Cancelled,
}

#[derive(Debug, Clone)]
pub struct Error {
    /// The object or bucket concerned, as an s3:// URL.
    pub url: String,
    pub kind: ErrorKind,
    pub message: String,
}

impl Error {
    fn new(url: impl Into<String>, kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            kind,
            message: message.into(),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.url, self.message)
    }
}

impl std::error::Error for Error {}

/// One stored object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Object {
    /// Its full key in the bucket.
    pub key: String,
    pub size: u64,
    /// Changes whenever the content does.
    pub etag: String,
}

/// One bucket, used from one thread at a time (each user opens its own: the runtime is single-threaded).
pub struct Bucket {
    name: String,
    store: AmazonS3,
    runtime: tokio::runtime::Runtime,
    /// Where requests go, for messages.
    pub endpoint: String,
    cancel: Cancel,
}

/// Lets another thread abandon the request a [`Bucket`] is blocked in, at once: an element stopping must not
/// wait for a server that stopped answering. Once cancelled, every later request of that bucket fails with
/// [`ErrorKind::Cancelled`] too.
#[derive(Debug, Clone, Default)]
pub struct Cancel(Arc<AtomicBool>);

impl Cancel {
    pub fn cancel(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

impl fmt::Debug for Bucket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Bucket(s3://{} at {})", self.name, self.endpoint)
    }
}

/// How long a request may take before it counts as failed. A server that accepts connections but never answers
/// must not hold a writer thread, a watcher or a state change for minutes: small requests (HEAD, a sample's
/// PUT, a copy) get `SMALL_REQUEST` all retries included, a PUT `SMALL_REQUEST` plus a second per
/// `SLOWEST_UPLOAD` bytes, a whole download (a model) `DOWNLOAD`. Retries with backoff cover brief hiccups.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
const SMALL_REQUEST: Duration = Duration::from_secs(10);
const DOWNLOAD: Duration = Duration::from_secs(120);
/// 256 KB/s: a 20 MB model is given 90 s.
const SLOWEST_UPLOAD: u64 = 256 * 1024;
const RETRIES: usize = 2;
const RETRY_WINDOW: Duration = Duration::from_secs(10);
/// How often a blocked request looks at its [`Cancel`].
const CANCEL_POLL: Duration = Duration::from_millis(50);

impl Bucket {
    /// Opens `bucket` with the `AWS_*` environment, then `overrides`. Makes no request.
    pub fn open(bucket: &str, overrides: &Overrides) -> Result<Self, Error> {
        let url = format!("s3://{bucket}");
        let mut builder = AmazonS3Builder::from_env().with_bucket_name(bucket);
        let env_endpoint = std::env::var("AWS_ENDPOINT_URL")
            .or_else(|_| std::env::var("AWS_ENDPOINT"))
            .ok();
        let endpoint = overrides.endpoint.clone().or(env_endpoint).filter(|e| !e.is_empty());
        if let Some(e) = &endpoint {
            if !(e.starts_with("http://") || e.starts_with("https://")) {
                return Err(Error::new(
                    url,
                    ErrorKind::Invalid,
                    format!("endpoint '{e}' must start with http:// or https://"),
                ));
            }
            builder = builder.with_endpoint(e);
        }
        let region = overrides
            .region
            .clone()
            .or_else(|| std::env::var("AWS_REGION").ok())
            .or_else(|| std::env::var("AWS_DEFAULT_REGION").ok())
            .unwrap_or_else(|| "us-east-1".into());
        builder = builder.with_region(region);
        let set = |b: AmazonS3Builder, key: AmazonS3ConfigKey, v: &Option<String>| match v {
            Some(v) if !v.is_empty() => b.with_config(key, v),
            _ => b,
        };
        builder = set(builder, AmazonS3ConfigKey::AccessKeyId, &overrides.access_key);
        builder = set(
            builder,
            AmazonS3ConfigKey::SecretAccessKey,
            &overrides.secret_access_key,
        );
        builder = set(builder, AmazonS3ConfigKey::Token, &overrides.session_token);
        let retry = RetryConfig {
            max_retries: RETRIES,
            retry_timeout: RETRY_WINDOW,
            ..Default::default()
        };
        let store = builder
            .with_retry(retry)
            .with_client_options(
                ClientOptions::new()
                    // An explicit plain-HTTP endpoint (a local MinIO or moto) is what the user asked for.
                    .with_allow_http(endpoint.as_deref().is_some_and(|e| e.starts_with("http://")))
                    .with_connect_timeout(CONNECT_TIMEOUT)
                    .with_timeout(DOWNLOAD),
            )
            .build()
            .map_err(|e| Error::new(&url, ErrorKind::Invalid, e.to_string()))?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| Error::new(&url, ErrorKind::Failed, format!("cannot start the I/O runtime: {e}")))?;
        Ok(Self {
            name: bucket.into(),
            store,
            runtime,
            endpoint: endpoint.unwrap_or_else(|| "AWS S3".into()),
            cancel: Cancel::default(),
        })
    }

    /// The same bucket, whose requests `cancel` abandons.
    pub fn with_cancel(mut self, cancel: Cancel) -> Self {
        self.cancel = cancel;
        self
    }

    /// Opens the bucket an s3:// URL names.
    pub fn open_url(url: &S3Url, overrides: &Overrides) -> Result<Self, Error> {
        Self::open(&url.bucket, overrides)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn url(&self, key: &str) -> String {
        format!("s3://{}/{key}", self.name)
    }

    fn error(&self, key: &str, e: object_store::Error) -> Error {
        let kind = match e {
            object_store::Error::NotFound { .. } => ErrorKind::NotFound,
            _ => ErrorKind::Failed,
        };
        // object_store's messages nest the whole request; the innermost cause is what a person needs.
        let mut message = e.to_string();
        let mut source = std::error::Error::source(&e);
        while let Some(s) = source {
            message = s.to_string();
            source = s.source();
        }
        Error::new(self.url(key), kind, format!("{message} (endpoint {})", self.endpoint))
    }

    /// Runs `request` to completion unless it takes longer than `limit` (an error that may pass) or the bucket's
    /// [`Cancel`] is set meanwhile.
    fn run<T>(&self, key: &str, limit: Duration, request: impl Future<Output = Result<T, Error>>) -> Result<T, Error> {
        if self.cancel.is_cancelled() {
            return Err(Error::new(self.url(key), ErrorKind::Cancelled, "cancelled"));
        }
        self.runtime.block_on(async {
            let cancelled = async {
                while !self.cancel.is_cancelled() {
                    tokio::time::sleep(CANCEL_POLL).await;
                }
            };
            let timed = tokio::time::timeout(limit, request);
            match futures::future::select(std::pin::pin!(timed), std::pin::pin!(cancelled)).await {
                futures::future::Either::Left((Ok(result), _)) => result,
                futures::future::Either::Left((Err(_), _)) => Err(Error::new(
                    self.url(key),
                    ErrorKind::Failed,
                    format!(
                        "no answer within {} s (endpoint {})",
                        limit.as_secs_f32(),
                        self.endpoint
                    ),
                )),
                futures::future::Either::Right(_) => Err(Error::new(self.url(key), ErrorKind::Cancelled, "cancelled")),
            }
        })
    }

    /// Stores `bytes` as `key` in one request: readers see the old object or the whole new one.
    pub fn put(&self, key: &str, bytes: Vec<u8>) -> Result<(), Error> {
        let path = ObjectPath::from(key);
        let limit = SMALL_REQUEST + Duration::from_secs(bytes.len() as u64 / SLOWEST_UPLOAD);
        self.run(key, limit, async {
            self.store
                .put(&path, bytes.into())
                .await
                .map(|_| ())
                .map_err(|e| self.error(key, e))
        })
    }

    /// The whole object, checked against its announced size.
    pub fn get(&self, key: &str) -> Result<(Vec<u8>, Object), Error> {
        self.run(key, DOWNLOAD, self.fetch(key))
    }

    async fn fetch(&self, key: &str) -> Result<(Vec<u8>, Object), Error> {
        let path = ObjectPath::from(key);
        let result = self.store.get(&path).await.map_err(|e| self.error(key, e))?;
        let meta = result.meta.clone();
        let bytes = result.bytes().await.map_err(|e| self.error(key, e))?;
        if bytes.len() as u64 != meta.size {
            return Err(Error::new(
                self.url(key),
                ErrorKind::Failed,
                format!("download cut short: {} of {} bytes", bytes.len(), meta.size),
            ));
        }
        Ok((bytes.to_vec(), object(meta)))
    }

    /// Downloads `keys` with up to `at_once` requests in flight (small objects are latency-bound: one at a
    /// time leaves the link idle), handing each result to `each` as it completes (in any order). Stops at the
    /// first error `each` returns.
    pub fn get_each(
        &self,
        keys: &[String],
        at_once: usize,
        mut each: impl FnMut(&str, Result<(Vec<u8>, Object), Error>) -> Result<(), Error>,
    ) -> Result<(), Error> {
        use futures::StreamExt;
        if self.cancel.is_cancelled() {
            return Err(Error::new(self.url(""), ErrorKind::Cancelled, "cancelled"));
        }
        self.runtime.block_on(async {
            let mut downloads = futures::stream::iter(keys)
                .map(|key| async move { (key.as_str(), self.fetch(key).await) })
                .buffer_unordered(at_once.max(1));
            while let Some((key, result)) = downloads.next().await {
                each(key, result)?;
            }
            Ok(())
        })
    }

    /// The object's size and ETag, or None when there is no such object.
    pub fn head(&self, key: &str) -> Result<Option<Object>, Error> {
        let path = ObjectPath::from(key);
        self.run(key, SMALL_REQUEST, async {
            match self.store.head(&path).await {
                Ok(meta) => Ok(Some(object(meta))),
                Err(object_store::Error::NotFound { .. }) => Ok(None),
                Err(e) => Err(self.error(key, e)),
            }
        })
    }

    /// Every object whose key starts with `prefix/` (all pages).
    pub fn list(&self, prefix: &str) -> Result<Vec<Object>, Error> {
        let path = (!prefix.is_empty()).then(|| ObjectPath::from(prefix));
        self.runtime.block_on(async {
            let metas: Vec<_> = self
                .store
                .list(path.as_ref())
                .try_collect()
                .await
                .map_err(|e| self.error(prefix, e))?;
            Ok(metas.into_iter().map(object).collect())
        })
    }

    /// Server-side copy: `to` changes in one step from its old content to `from`'s.
    pub fn copy(&self, from: &str, to: &str) -> Result<(), Error> {
        self.run(to, DOWNLOAD, async {
            self.store
                .copy(&ObjectPath::from(from), &ObjectPath::from(to))
                .await
                .map_err(|e| self.error(to, e))
        })
    }

    pub fn delete(&self, key: &str) -> Result<(), Error> {
        self.run(key, SMALL_REQUEST, async {
            self.store
                .delete(&ObjectPath::from(key))
                .await
                .map_err(|e| self.error(key, e))
        })
    }
}

fn object(meta: object_store::ObjectMeta) -> Object {
    Object {
        key: meta.location.to_string(),
        size: meta.size,
        // Servers quote ETags; the quotes are not part of the value.
        etag: meta.e_tag.unwrap_or_default().trim_matches('"').to_string(),
    }
}

/// A name part safe in object keys and file names: letters, digits, '.', '-' and '_' kept, anything else '_'.
pub fn safe_name(name: &str) -> String {
    let cleaned: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                c
            } else {
                '_'
            }
        })
        .collect();
    let cleaned = cleaned.trim_start_matches('.');
    if cleaned.is_empty() {
        "device".into()
    } else {
        cleaned.into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_and_bad_ones_say_why() {
        let u = S3Url::parse("s3://fleet-data/captures/").unwrap();
        assert_eq!((u.bucket.as_str(), u.key.as_str()), ("fleet-data", "captures"));
        assert_eq!(u.child("Annotations/a.xml"), "captures/Annotations/a.xml");
        let root = S3Url::parse("s3://fleet").unwrap();
        assert_eq!(root.child("x"), "x");
        for bad in [
            "/tmp/x",
            "s3://",
            "s3://UPPER/x",
            "s3://ab/x",
            "s3://b_c/x",
            "s3://bucket/a/../b",
            "s3://bucket/a//b",
        ] {
            let e = S3Url::parse(bad).unwrap_err();
            assert_eq!(e.kind, ErrorKind::Invalid, "{bad}");
            assert!(e.to_string().starts_with(bad), "{e}");
        }
    }

    #[test]
    fn safe_names_keep_keys_flat() {
        assert_eq!(safe_name("car-07"), "car-07");
        assert_eq!(safe_name("robot 3/../x"), "robot_3_.._x");
        assert_eq!(safe_name("..hidden"), "hidden");
        assert_eq!(safe_name(""), "device");
    }

    #[test]
    fn a_bad_endpoint_is_refused_without_a_request() {
        let o = Overrides {
            endpoint: Some("127.0.0.1:9000".into()),
            ..Default::default()
        };
        let e = Bucket::open("fleet", &o).unwrap_err();
        assert!(e.message.contains("http://"), "{e}");
    }

    /// A server that accepts connections and never answers, for as long as the returned listener lives.
    fn stalled_server() -> (std::net::TcpListener, Overrides) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let o = Overrides {
            endpoint: Some(format!("http://{}", listener.local_addr().unwrap())),
            access_key: Some("k".into()),
            secret_access_key: Some("s".into()),
            ..Default::default()
        };
        (listener, o)
    }

    #[test]
    fn a_server_that_never_answers_is_a_failure_within_the_request_limit() {
        let (_listener, o) = stalled_server();
        let bucket = Bucket::open("fleet", &o).unwrap();
        let started = std::time::Instant::now();
        let e = bucket.head("models/latest.onnx").unwrap_err();
        let took = started.elapsed();
        assert_eq!(e.kind, ErrorKind::Failed, "{e}");
        assert!(e.message.contains("no answer within 10 s"), "{e}");
        assert!(
            took >= SMALL_REQUEST && took < SMALL_REQUEST + Duration::from_secs(3),
            "{took:?}"
        );
    }

    #[test]
    fn a_cancelled_request_returns_at_once() {
        let (_listener, o) = stalled_server();
        let cancel = Cancel::default();
        let bucket = Bucket::open("fleet", &o).unwrap().with_cancel(cancel.clone());
        let canceller = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            cancel.cancel();
        });
        let started = std::time::Instant::now();
        let e = bucket.put("a/b.jpg", vec![0; 1000]).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Cancelled, "{e}");
        assert!(started.elapsed() < Duration::from_secs(1), "{:?}", started.elapsed());
        canceller.join().unwrap();
        // Cancelled for good: the next request does not even start.
        assert_eq!(bucket.head("x").unwrap_err().kind, ErrorKind::Cancelled);
    }
}
