//! The capture's track policy: with `detectiontrack` upstream, each object can be saved once — at its first
//! chosen frame, or at its most uncertain one — instead of on dozens of near-identical frames.

use super::writer::Sample;
use gst::glib;
use std::collections::{HashMap, HashSet};

/// How tracked objects (boxes with a track id, from `detectiontrack`) are captured.
#[derive(Debug, Eq, PartialEq, Ord, PartialOrd, Hash, Clone, Copy, glib::Enum, Default)]
#[repr(u32)]
#[enum_type(name = "GstDetectionCaptureTrackPolicy")]
pub enum TrackPolicy {
    #[default]
    #[enum_value(name = "Every chosen frame, tracked or not", nick = "all")]
    All,
    #[enum_value(name = "Each track once, at its first chosen frame", nick = "first")]
    First,
    #[enum_value(
        name = "Each track once, at the frame where its confidence is nearest the middle of the uncertain band \
                (saved when the track ends)",
        nick = "most-uncertain"
    )]
    MostUncertain,
}

/// Frames a track may be unseen before `most-uncertain` saves its frame.
const TRACK_GONE_FRAMES: u64 = 30;

/// A tracked object's best frame so far, held until the track ends.
struct Candidate {
    /// The frame number and its sample (a deep copy: an upstream buffer pool must not be starved).
    frame: u64,
    sample: Sample,
    /// |confidence - middle of the uncertain band|: smaller is more uncertain.
    distance: f32,
    last_seen: u64,
}

/// What the policy remembers between frames.
#[derive(Default)]
pub struct TrackMemory {
    /// The chosen frame's qualifying boxes with a track id, and their confidences (filled by `select`).
    pub frame_tracks: Vec<(u64, Option<f32>)>,
    /// Whether the chosen frame also has a qualifying box without a track id.
    pub frame_untracked: bool,
    /// Tracks already saved (policies `first` and `most-uncertain`).
    saved: HashSet<u64>,
    /// `most-uncertain`: per live track, its best frame so far.
    candidates: HashMap<u64, Candidate>,
}

impl TrackMemory {
    /// What to write for chosen frame number `frame` under `policy`: the frame itself, nothing (its tracks
    /// are saved already), or (`most-uncertain`) the best frames of tracks that have ended. `band` is the
    /// uncertain band.
    pub fn choose(
        &mut self,
        policy: TrackPolicy,
        (low, high): (f32, f32),
        frame: u64,
        sample: Sample,
    ) -> Result<Vec<Sample>, gst::FlowError> {
        let tracks = std::mem::take(&mut self.frame_tracks);
        let only_tracked = !tracks.is_empty() && !self.frame_untracked;
        let out = match policy {
            TrackPolicy::All => vec![sample],
            _ if !only_tracked => vec![sample],
            TrackPolicy::First => {
                let new: Vec<u64> = tracks
                    .iter()
                    .map(|t| t.0)
                    .filter(|id| !self.saved.contains(id))
                    .collect();
                if new.is_empty() {
                    Vec::new()
                } else {
                    self.saved.extend(new);
                    vec![sample]
                }
            }
            TrackPolicy::MostUncertain => {
                let middle = (low + high) / 2.0;
                let mut copy: Option<Sample> = None;
                for &(id, confidence) in &tracks {
                    if self.saved.contains(&id) {
                        continue;
                    }
                    let distance = confidence.map(|c| (c - middle).abs()).unwrap_or(0.0);
                    if self.candidates.get(&id).is_none_or(|c| distance < c.distance) {
                        if copy.is_none() {
                            // A copy of the frame: holding the upstream buffer could starve its pool.
                            let buffer = sample.buffer.copy_deep().map_err(|_| gst::FlowError::Error)?;
                            copy = Some(Sample {
                                buffer,
                                info: sample.info.clone(),
                                boxes: sample.boxes.clone(),
                                region: sample.region,
                            });
                        }
                        let held = copy.as_ref().expect("copied above");
                        let candidate = Candidate {
                            frame,
                            sample: Sample {
                                buffer: held.buffer.clone(),
                                info: held.info.clone(),
                                boxes: held.boxes.clone(),
                                region: held.region,
                            },
                            distance,
                            last_seen: frame,
                        };
                        self.candidates.insert(id, candidate);
                    } else if let Some(c) = self.candidates.get_mut(&id) {
                        c.last_seen = frame;
                    }
                }
                self.ended(Some(frame))
            }
        };
        // Keeps the allocation for the next frame.
        self.frame_tracks = tracks;
        Ok(out)
    }

    /// Takes the held frames of tracks unseen for a while (all of them with `now` None, at EOS); a frame that
    /// was best for several tracks is written once.
    pub fn ended(&mut self, now: Option<u64>) -> Vec<Sample> {
        let ended: Vec<u64> = self
            .candidates
            .iter()
            .filter(|(_, c)| now.is_none_or(|now| c.last_seen + TRACK_GONE_FRAMES < now))
            .map(|(id, _)| *id)
            .collect();
        let mut frames: Vec<(u64, Sample)> = Vec::new();
        for id in ended {
            let c = self.candidates.remove(&id).expect("listed above");
            self.saved.insert(id);
            if !frames.iter().any(|(f, _)| *f == c.frame) {
                frames.push((c.frame, c.sample));
            }
        }
        frames.sort_by_key(|(f, _)| *f);
        frames.into_iter().map(|(_, s)| s).collect()
    }
}
