//! The writer thread of `detectionjson` and `detectioncapture`: the streaming thread hands items over a bounded
//! queue and never does blocking I/O itself; EOS waits until everything queued before it is written; `stop`
//! joins the thread.

use crossbeam_channel::{Receiver, Sender, TrySendError};
use std::thread::JoinHandle;

/// What the writer thread does with the items.
pub trait Work: Send + 'static {
    type Item: Send + 'static;

    /// Runs first, on the writer thread.
    fn started(&mut self) {}

    /// Writes one item; `Err(())` stops the thread (the element has posted an error).
    #[allow(clippy::result_unit_err)]
    fn write(&mut self, item: Self::Item) -> Result<(), ()>;

    /// Makes everything written so far durable or visible (at EOS).
    fn flush(&mut self) {}

    /// The queue closed (the element stops): what is written must be durable, and nothing may wait long
    /// (a state change is waiting). The default flushes.
    fn finish(&mut self) {
        self.flush()
    }
}

enum Job<T> {
    Item(T),
    /// Flush and acknowledge: everything queued before it has been handled.
    Drain(Sender<()>),
}

/// Why an item was not queued.
pub enum Refused<T> {
    /// The queue is full; the item comes back.
    Full(T),
    /// The writer thread has ended.
    Stopped,
}

/// The sending side, cheap to clone: taken out of an element's state so that waiting (back-pressure, EOS) never
/// holds the element's lock.
pub struct Queue<T> {
    sender: Sender<Job<T>>,
}

impl<T> Clone for Queue<T> {
    fn clone(&self) -> Self {
        Self {
            sender: self.sender.clone(),
        }
    }
}

impl<T> Queue<T> {
    /// Queues without waiting.
    pub fn offer(&self, item: T) -> Result<(), Refused<T>> {
        self.sender.try_send(Job::Item(item)).map_err(|e| match e {
            TrySendError::Full(Job::Item(item)) => Refused::Full(item),
            _ => Refused::Stopped,
        })
    }

    /// Queues, waiting for room; `Err` when the writer thread has ended.
    #[allow(clippy::result_unit_err)]
    pub fn send(&self, item: T) -> Result<(), ()> {
        self.sender.send(Job::Item(item)).map_err(|_| ())
    }

    /// Waits until every item queued before this call is written and flushed.
    pub fn drain(&self) {
        let (ack, done) = crossbeam_channel::bounded(1);
        if self.sender.send(Job::Drain(ack)).is_ok() {
            let _ = done.recv();
        }
    }
}

/// A running writer thread and its queue.
pub struct Writer<T> {
    pub queue: Queue<T>,
    thread: Option<JoinHandle<()>>,
}

impl<T: Send + 'static> Writer<T> {
    /// Starts thread `name` with a queue of `capacity` items.
    pub fn start<W: Work<Item = T>>(name: &str, capacity: usize, work: W) -> std::io::Result<Self> {
        let (sender, jobs) = crossbeam_channel::bounded(capacity);
        let thread = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || run(work, jobs))?;
        Ok(Self {
            queue: Queue { sender },
            thread: Some(thread),
        })
    }

    /// Closes the queue and waits for the thread to write what is queued. Never joins from the writer thread
    /// itself (an application may stop the pipeline from a handler of the writer's own warning).
    pub fn stop(mut self) {
        let thread = self.thread.take();
        drop(self);
        if let Some(t) = thread
            && t.thread().id() != std::thread::current().id()
        {
            let _ = t.join();
        }
    }
}

fn run<W: Work>(mut work: W, jobs: Receiver<Job<W::Item>>) {
    work.started();
    while let Ok(job) = jobs.recv() {
        match job {
            Job::Item(item) => {
                if work.write(item).is_err() {
                    return;
                }
            }
            Job::Drain(ack) => {
                work.flush();
                let _ = ack.send(());
            }
        }
    }
    work.finish();
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    struct Record(Arc<Mutex<Vec<String>>>);

    impl Work for Record {
        type Item = u32;
        fn write(&mut self, item: u32) -> Result<(), ()> {
            std::thread::sleep(std::time::Duration::from_millis(2));
            self.0.lock().unwrap().push(format!("write {item}"));
            if item == 99 { Err(()) } else { Ok(()) }
        }
        fn flush(&mut self) {
            self.0.lock().unwrap().push("flush".into());
        }
    }

    #[test]
    fn drain_waits_for_everything_queued_before_it_and_stop_writes_the_rest() {
        let log = Arc::new(Mutex::new(Vec::new()));
        let w = Writer::start("test-writer", 2, Record(log.clone())).unwrap();
        for i in 0..5 {
            w.queue.send(i).unwrap();
        }
        w.queue.drain();
        assert_eq!(log.lock().unwrap().len(), 6, "{:?}", log.lock().unwrap());
        assert_eq!(log.lock().unwrap()[5], "flush");
        w.queue.send(5).unwrap();
        w.stop();
        assert_eq!(log.lock().unwrap()[6..], ["write 5", "flush"]);
    }

    #[test]
    fn a_full_queue_gives_the_item_back_and_a_stopped_writer_refuses() {
        let log = Arc::new(Mutex::new(Vec::new()));
        let w = Writer::start("test-writer", 1, Record(log.clone())).unwrap();
        let mut full = false;
        for i in 0..50 {
            if let Err(Refused::Full(item)) = w.queue.offer(i) {
                assert_eq!(item, i);
                full = true;
                break;
            }
        }
        assert!(full, "a queue of one fills up behind a slow writer");
        w.queue.send(99).unwrap();
        // The writer ends after item 99; sends then fail.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while w.queue.send(1).is_ok() {
            assert!(std::time::Instant::now() < deadline, "the writer did not stop");
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert!(matches!(w.queue.offer(1), Err(Refused::Stopped)));
        w.stop();
    }
}
