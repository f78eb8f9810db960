//! Loading models off the streaming thread: one background loader thread that coalesces reload requests, the
//! hand-over of a loaded model to the streaming thread (swapped in between two frames, so no frame is lost),
//! and the watcher behind `watch-model` (a local file, or an s3:// object polled every `watch-interval`).

use super::imp::CAT;
use super::remote::{RemoteWatch, is_remote};
use super::settings::Settings;
use detection_inference::{Model, PostProcess};
use gst::prelude::*;
use gst::subclass::prelude::*;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How often the watcher looks at the model file.
const WATCH_POLL: Duration = Duration::from_millis(200);

/// A model loaded off the streaming thread, waiting to be swapped in between two frames.
pub(super) struct PendingModel {
    pub generation: u64,
    pub model: Arc<Model>,
    pub post: PostProcess,
    pub shadow: Option<super::frames::Shadow>,
    pub release: super::imp::Release,
    pub settings: Settings,
}

#[derive(Default)]
pub(super) struct ModelLoader {
    pending: Mutex<Option<PendingModel>>,
    /// Incremented for each requested (re)load; a finished load whose generation is stale is dropped.
    generation: AtomicU64,
    thread: Mutex<LoaderThread>,
    watcher: Mutex<Option<ModelWatcher>>,
    /// Abandons the downloads and polls of this run when the element stops (a server that stopped answering
    /// must not hold the state change).
    cancel: Mutex<detection_storage::Cancel>,
}

/// The loader thread, joined by `stop` so no load outlives the element's run.
#[derive(Default)]
struct LoaderThread {
    handle: Option<JoinHandle<()>>,
    /// Whether the thread is still taking requests (it loads again when the settings changed meanwhile).
    busy: bool,
}

/// Polls the model file while `watch-model` is on; a replaced file (new inode, size or mtime, stable over two
/// polls so a file still being written is not loaded) triggers the same background reload as setting `model`.
struct ModelWatcher {
    stop: Arc<AtomicBool>,
    handle: JoinHandle<()>,
}

impl ModelLoader {
    /// Makes any load in progress stale and drops a model not yet swapped in (at start, before the first load).
    pub fn reset(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        self.pending.lock().unwrap().take();
        *self.cancel.lock().unwrap() = Default::default();
    }

    /// What abandons this run's downloads and polls.
    pub fn cancel(&self) -> detection_storage::Cancel {
        self.cancel.lock().unwrap().clone()
    }

    /// Starts loading the model the element's current settings describe. One loader thread at a time:
    /// requests that arrive while it works are coalesced, and it loads again with the newest settings before
    /// it hands a model over.
    pub fn request(&self, element: &super::MobilenetDetect) {
        let mut thread = self.thread.lock().unwrap();
        self.generation.fetch_add(1, Ordering::SeqCst);
        if thread.busy {
            return;
        }
        let owner = element.clone();
        match std::thread::Builder::new()
            .name("mobilenetdetect-load".into())
            .spawn(move || {
                // Downloads of s3:// models happen here.
                crate::fleet::block_io_signals_in_this_thread();
                Self::run(owner)
            }) {
            Ok(handle) => {
                // An earlier loader has handed its result over and is ending: it needs no join.
                thread.handle = Some(handle);
                thread.busy = true;
            }
            Err(e) => {
                drop(thread);
                gst::element_warning!(
                    element,
                    gst::CoreError::Thread,
                    ("cannot start the model loader thread: {}", e)
                )
            }
        }
    }

    /// The loader thread's body: loads until the settings it loaded are the newest requested, then hands the
    /// model over to the streaming thread (or warns and keeps the running model).
    fn run(element: super::MobilenetDetect) {
        let imp = element.imp();
        let this = &imp.loader;
        let stale = |generation| imp.is_running() && this.generation.load(Ordering::SeqCst) != generation;
        let mut thread = loop {
            let generation = this.generation.load(Ordering::SeqCst);
            let settings = imp.settings();
            // A panic while loading (a broken file tripping a library) must not take the process down.
            let cancel = this.cancel();
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                super::imp::MobilenetDetect::load(&settings, false, &cancel)
            }));
            let thread = this.thread.lock().unwrap();
            if stale(generation) {
                gst::debug!(CAT, obj = element, "settings changed while loading, loading again");
                continue;
            }
            if !imp.is_running() {
                break thread;
            }
            // The outcome is handed over under the thread lock, so no newer request can interleave; what is
            // posted waits until the lock is released.
            match result {
                Err(panic) => {
                    drop(thread);
                    gst::element_error!(
                        element,
                        gst::LibraryError::Failed,
                        (
                            "loading {} failed unexpectedly: {}",
                            settings.model.as_deref().unwrap_or(""),
                            panic_text(&panic)
                        )
                    );
                }
                Ok(Ok(loaded)) => {
                    gst::info!(
                        CAT,
                        obj = element,
                        "model {} ready, swapping it in at the next frame",
                        loaded.model.path.display()
                    );
                    for w in &loaded.warnings {
                        gst::warning!(CAT, obj = element, "{w}");
                    }
                    *this.pending.lock().unwrap() = Some(PendingModel {
                        generation,
                        model: loaded.model,
                        post: loaded.post,
                        shadow: loaded.shadow,
                        release: loaded.release,
                        settings,
                    });
                    break thread;
                }
                Ok(Err(e)) => {
                    gst::warning!(CAT, obj = element, "keeping the current model: {e}");
                    imp.restore_active_settings(&settings);
                    drop(thread);
                    gst::element_warning!(
                        element,
                        gst::LibraryError::Settings,
                        ("Keeping the current model: {}", e)
                    );
                }
            }
            // After a post (the lock was released): done unless a handler asked for another load meanwhile.
            let thread = this.thread.lock().unwrap();
            if stale(generation) {
                continue;
            }
            break thread;
        };
        // From here on a new request starts a new loader.
        thread.busy = false;
    }

    /// The model loaded for the newest request, if it is ready; never waits (called per frame).
    pub fn take_ready(&self) -> Option<PendingModel> {
        let mut pending = self.pending.try_lock().ok()?;
        let p = pending.take()?;
        (p.generation == self.generation.load(Ordering::SeqCst)).then_some(p)
    }

    /// Watches the file the `model` property names (it may change) and requests a reload when it is replaced.
    pub fn watch(&self, element: &super::MobilenetDetect, initial_path: String) {
        let stop = Arc::new(AtomicBool::new(false));
        let weak = element.downgrade();
        let flag = stop.clone();
        let cancel = self.cancel();
        let spawned = std::thread::Builder::new()
            .name("mobilenetdetect-watch".into())
            .spawn(move || {
                crate::fleet::block_io_signals_in_this_thread();
                let mut seen = file_signature(&initial_path);
                let mut candidate = None;
                let mut remote: Option<(String, RemoteWatch)> = None;
                let mut next_remote_poll = Instant::now();
                while !flag.load(Ordering::SeqCst) {
                    std::thread::sleep(WATCH_POLL);
                    let Some(element) = weak.upgrade() else { break };
                    let imp = element.imp();
                    let settings = imp.settings();
                    let path = settings.model.clone().unwrap_or_default();
                    if is_remote(&path) {
                        // Object storage: one HEAD per interval, not per 200 ms.
                        if Instant::now() < next_remote_poll {
                            continue;
                        }
                        next_remote_poll = Instant::now() + Duration::from_millis(settings.watch_interval.into());
                        if remote.as_ref().is_none_or(|(url, _)| *url != path) {
                            match RemoteWatch::new(&path, &settings.s3.0, &cancel) {
                                Ok(w) => remote = Some((path.clone(), w)),
                                Err(e) => {
                                    gst::warning!(CAT, obj = element, "cannot watch {path}: {e}");
                                    continue;
                                }
                            }
                        }
                        let Some((_, watch)) = remote.as_mut() else { continue };
                        match watch.changed(imp.running_model_path().as_deref()) {
                            Ok(true) if imp.is_running() => {
                                gst::info!(CAT, obj = element, "{path} changed, downloading it in the background");
                                imp.loader.request(&element);
                            }
                            Ok(_) => {}
                            // The network or the server: the running model goes on, the next poll tries again.
                            Err(e) => gst::warning!(CAT, obj = element, "cannot check {path}: {e}"),
                        }
                        continue;
                    }
                    let current = file_signature(&path);
                    let same_path = current.as_ref().map(|c| &c.0) == seen.as_ref().map(|s| &s.0);
                    if current.is_some() && !same_path {
                        // The model property changed: that already reloaded.
                        seen = current;
                        candidate = None;
                    } else if current.is_none() || current == seen {
                        candidate = None;
                    } else if current == candidate {
                        gst::info!(CAT, obj = element, "{path} was replaced, reloading");
                        seen = current;
                        candidate = None;
                        if imp.is_running() {
                            imp.loader.request(&element);
                        }
                    } else {
                        candidate = current;
                    }
                }
            });
        match spawned {
            Ok(handle) => *self.watcher.lock().unwrap() = Some(ModelWatcher { stop, handle }),
            Err(e) => gst::element_warning!(element, gst::CoreError::Thread, ("cannot watch the model file: {}", e)),
        }
    }

    /// Stops the watcher and waits for a load in progress (its result is dropped; a download is abandoned).
    pub fn stop(&self) {
        self.cancel.lock().unwrap().cancel();
        if let Some(w) = self.watcher.lock().unwrap().take() {
            w.stop.store(true, Ordering::SeqCst);
            let _ = w.handle.join();
        }
        self.generation.fetch_add(1, Ordering::SeqCst);
        // Never join from the loader itself (an application may stop the pipeline from a handler of the
        // loader's own warning).
        let handle = self.thread.lock().unwrap().handle.take();
        if let Some(handle) = handle
            && handle.thread().id() != std::thread::current().id()
        {
            let _ = handle.join();
        }
        self.pending.lock().unwrap().take();
    }
}

/// What identifies one version of the model file.
fn file_signature(path: &str) -> Option<(String, u64, u64, i64, i64)> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).ok()?;
    Some((path.to_string(), m.ino(), m.len(), m.mtime(), m.mtime_nsec()))
}

fn panic_text(panic: &Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic".into())
}
