//! Multi-object tracking in the ByteTrack manner: a constant-velocity Kalman filter per track over (centre x,
//! centre y, aspect ratio, height), and a two-stage association each frame — confident detections first (with
//! lost tracks too), then the low-score detections against the tracks still unmatched, which keeps objects
//! through occlusion and blur where their score dips. Assignment is optimal (Hungarian) on 1 - IoU, within a
//! class by default, or across classes (a detector that flips between two classes of a far object then keeps one
//! identity; a class change costs a little, so that of two equal overlaps the same class wins). A track's
//! class is a vote over its recent detections, weighted by their scores; a class that leads the vote 1.5:1 takes
//! the track over as another object (a new id).
//!
//! The filter is DeepSORT's/ByteTrack's: its process and measurement noise scale with the box height and are
//! diagonal, so the eight-state filter falls apart into four independent (position, velocity) filters, which is
//! what is run here.

use crate::BBox;
use crate::assignment::assign;

/// Tracker settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TrackerConfig {
    /// Detections at or above this score take part in the first association and may start tracks.
    pub high_threshold: f32,
    /// Detections between this and `high_threshold` are only used to continue tracked objects.
    pub low_threshold: f32,
    /// A new track needs a detection at least this confident.
    pub new_track_threshold: f32,
    /// Minimum IoU of a match in the first association.
    pub match_iou: f32,
    /// Minimum IoU of a match with a low-score detection.
    pub low_match_iou: f32,
    /// Frames a lost track is kept (predicted) before it is dropped.
    pub lost_frames: u32,
    /// Detections a new track needs (on consecutive frames) before it gets an id.
    pub min_hits: u32,
    /// Whether a detection may continue a track of another class (the track's class is then a vote).
    pub cross_class: bool,
}

impl Default for TrackerConfig {
    fn default() -> Self {
        Self {
            high_threshold: 0.5,
            low_threshold: 0.1,
            new_track_threshold: 0.6,
            match_iou: 0.2,
            low_match_iou: 0.5,
            lost_frames: 30,
            min_hits: 2,
            // Off: on detecttestsrc clips, where a sign that turns into another class is another object, it
            // costs IDF1 (0.662 against 0.731, benchmarks/tracking).
            cross_class: false,
        }
    }
}

/// One detection given to the tracker.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TrackInput {
    pub class_id: u32,
    pub score: f32,
    pub bbox: BBox,
}

/// (position, velocity) along one axis with its 2x2 covariance.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Axis {
    x: f64,
    v: f64,
    /// Covariance [[pp, pv], [pv, vv]].
    pp: f64,
    pv: f64,
    vv: f64,
}

impl Axis {
    fn new(x: f64, pos_std: f64, vel_std: f64) -> Self {
        Self {
            x,
            v: 0.0,
            pp: pos_std * pos_std,
            pv: 0.0,
            vv: vel_std * vel_std,
        }
    }

    fn predict(&mut self, pos_std: f64, vel_std: f64) {
        self.x += self.v;
        // P = F P F' + Q with F = [[1, 1], [0, 1]].
        self.pp += 2.0 * self.pv + self.vv + pos_std * pos_std;
        self.pv += self.vv;
        self.vv += vel_std * vel_std;
    }

    fn update(&mut self, z: f64, meas_std: f64) {
        let s = self.pp + meas_std * meas_std;
        let (kp, kv) = (self.pp / s, self.pv / s);
        let innovation = z - self.x;
        self.x += kp * innovation;
        self.v += kv * innovation;
        let (pp, pv, vv) = (self.pp, self.pv, self.vv);
        self.pp = (1.0 - kp) * pp;
        self.pv = (1.0 - kp) * pv;
        self.vv = vv - kv * pv;
    }
}

const POSITION_WEIGHT: f64 = 1.0 / 20.0;
const VELOCITY_WEIGHT: f64 = 1.0 / 160.0;

/// Kalman filter over (cx, cy, aspect, height).
#[derive(Debug, Clone, Copy, PartialEq)]
struct BoxFilter {
    axes: [Axis; 4],
}

impl BoxFilter {
    fn measurement(b: &BBox) -> [f64; 4] {
        let (w, h) = ((b.x1 - b.x0) as f64, (b.y1 - b.y0) as f64);
        [
            (b.x0 + b.x1) as f64 / 2.0,
            (b.y0 + b.y1) as f64 / 2.0,
            w / h.max(1e-6),
            h,
        ]
    }

    /// Noise standard deviations (position, velocity) per axis for height `h`.
    fn noise(h: f64) -> [(f64, f64); 4] {
        let (p, v) = (POSITION_WEIGHT * h, VELOCITY_WEIGHT * h);
        [(p, v), (p, v), (1e-2, 1e-5), (p, v)]
    }

    fn new(b: &BBox) -> Self {
        let z = Self::measurement(b);
        let n = Self::noise(z[3]);
        // The initial uncertainty is twice the position noise and ten times the velocity noise.
        Self {
            axes: [0, 1, 2, 3].map(|i| Axis::new(z[i], 2.0 * n[i].0, 10.0 * n[i].1)),
        }
    }

    fn predict(&mut self) {
        let n = Self::noise(self.axes[3].x);
        for (a, (p, v)) in self.axes.iter_mut().zip(n) {
            a.predict(p, v);
        }
        self.axes[3].x = self.axes[3].x.max(1e-3);
    }

    fn update(&mut self, b: &BBox) {
        let z = Self::measurement(b);
        let h = self.axes[3].x;
        let meas = [POSITION_WEIGHT * h, POSITION_WEIGHT * h, 1e-1, POSITION_WEIGHT * h];
        for i in 0..4 {
            self.axes[i].update(z[i], meas[i]);
        }
    }

    fn bbox(&self) -> BBox {
        let [cx, cy, a, h] = self.axes.map(|a| a.x);
        let w = a.max(0.0) * h;
        BBox::new(
            (cx - w / 2.0) as f32,
            (cy - h / 2.0) as f32,
            (cx + w / 2.0) as f32,
            (cy + h / 2.0) as f32,
        )
    }
}

/// Where a track stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrackState {
    /// Seen, but not often enough yet to get an id.
    Tentative,
    /// Matched on the last frame.
    Tracked,
    /// Not matched lately; kept and predicted for `lost_frames`.
    Lost,
}

/// What a class change costs in the association, in units of IoU.
const CLASS_CHANGE_COST: f64 = 0.3;
/// How much of a track's class votes is left after one frame: about the last ten detections count.
const VOTE_DECAY: f32 = 0.9;
/// How far another class must lead the vote to take a track over: then it is another object (a detector's
/// flip-flop between two classes rarely leads that far; a sign that is another sign from now on does, within
/// about nine frames; a faster takeover, 0.7 and 1.2, split the tracks of a detector with 25% flips 12-fold).
const TAKEOVER_LEAD: f32 = 1.5;
/// Across classes, a detection that overlaps a more confident one of another class this much is the same object
/// seen as two classes (per-class NMS keeps both): it neither matches nor starts a track.
const SAME_OBJECT_IOU: f32 = 0.7;

#[derive(Debug, Clone)]
pub struct Track {
    /// 0 while tentative; ids start at 1 and are never reused.
    pub id: u64,
    /// The class with the most votes.
    pub class_id: u32,
    pub score: f32,
    pub state: TrackState,
    filter: BoxFilter,
    hits: u32,
    missed: u32,
    /// (class, decayed sum of the scores of its detections), one entry per class the track was detected as.
    votes: Vec<(u32, f32)>,
}

impl Track {
    /// The share of the votes that the track's class holds (1: every recent detection said so).
    pub fn class_confidence(&self) -> f32 {
        let total: f32 = self.votes.iter().map(|v| v.1).sum();
        let mine = self.votes.iter().find(|v| v.0 == self.class_id).map_or(0.0, |v| v.1);
        if total > 0.0 { mine / total } else { 1.0 }
    }

    /// Counts a detection of `class_id`; true when another class took the track over.
    fn vote(&mut self, class_id: u32, score: f32) -> bool {
        for v in &mut self.votes {
            v.1 *= VOTE_DECAY;
        }
        match self.votes.iter_mut().find(|v| v.0 == class_id) {
            Some(v) => v.1 += score,
            None => self.votes.push((class_id, score)),
        }
        let mine = self.votes.iter().find(|v| v.0 == self.class_id).map_or(0.0, |v| v.1);
        let best = self.votes.iter().copied().max_by(|a, b| a.1.total_cmp(&b.1));
        match best {
            Some((class, votes)) if class != self.class_id && votes >= TAKEOVER_LEAD * mine => {
                self.class_id = class;
                true
            }
            _ => false,
        }
    }

    /// The filter's current box (predicted on frames without a match).
    pub fn bbox(&self) -> BBox {
        self.filter.bbox()
    }

    /// Frames since the track was last matched (0 when matched on this frame).
    pub fn missed(&self) -> u32 {
        self.missed
    }
}

/// The result of one frame for one input detection: the id of the track it belongs to, if it has one yet.
pub type Assignment = Option<u64>;

#[derive(Debug, Clone, Default)]
pub struct Tracker {
    pub config: TrackerConfig,
    tracks: Vec<Track>,
    next_id: u64,
    frames: u64,
}

impl Tracker {
    pub fn new(config: TrackerConfig) -> Self {
        Self {
            config,
            tracks: Vec::new(),
            next_id: 1,
            frames: 0,
        }
    }

    /// Ends every track (the frames that follow are of another size or another stream) without ever reusing
    /// an id: the next new track continues the numbering, so an id always means one object.
    pub fn start_over(&mut self) {
        self.tracks.clear();
    }

    /// The live tracks (tentative ones included).
    pub fn tracks(&self) -> &[Track] {
        &self.tracks
    }

    /// A frame without detections to use (the detector skipped it): every track moves on by its motion
    /// model. Lost tracks still count down.
    pub fn predict_only(&mut self) {
        for t in &mut self.tracks {
            t.filter.predict();
        }
    }

    /// Advances one frame with its detections; returns, per detection, its track id (None: not tracked, or a
    /// tentative track).
    pub fn update(&mut self, detections: &[TrackInput]) -> Vec<Assignment> {
        self.frames += 1;
        let cfg = self.config;
        for t in &mut self.tracks {
            t.filter.predict();
        }
        let mut result: Vec<Option<usize>> = vec![None; detections.len()];
        let shadowed = if cfg.cross_class {
            same_object_as_a_better_one(detections)
        } else {
            vec![false; detections.len()]
        };
        let high: Vec<usize> = (0..detections.len())
            .filter(|&i| !shadowed[i] && detections[i].score >= cfg.high_threshold)
            .collect();
        let low: Vec<usize> = (0..detections.len())
            .filter(|&i| {
                !shadowed[i] && detections[i].score < cfg.high_threshold && detections[i].score >= cfg.low_threshold
            })
            .collect();
        let confirmed: Vec<usize> = (0..self.tracks.len())
            .filter(|&t| self.tracks[t].state != TrackState::Tentative)
            .collect();
        // 1. Confident detections against tracked and lost tracks.
        let (matched, unmatched_tracks, unmatched_high) = self.associate(&confirmed, &high, detections, cfg.match_iou);
        for (t, d) in matched {
            result[d] = Some(t);
        }
        // 2. Low-score detections against tracks that were tracked on the last frame and are still unmatched.
        let still_tracked: Vec<usize> = unmatched_tracks
            .iter()
            .copied()
            .filter(|&t| self.tracks[t].state == TrackState::Tracked)
            .collect();
        let (matched, _, _) = self.associate(&still_tracked, &low, detections, cfg.low_match_iou);
        for (t, d) in matched {
            result[d] = Some(t);
        }
        // 3. Tentative tracks against the confident detections left.
        let tentative: Vec<usize> = (0..self.tracks.len())
            .filter(|&t| self.tracks[t].state == TrackState::Tentative)
            .collect();
        let (matched, _, unmatched_high) = self.associate(&tentative, &unmatched_high, detections, cfg.match_iou);
        for (t, d) in matched {
            result[d] = Some(t);
        }
        // Updates.
        let mut matched_track = vec![false; self.tracks.len()];
        for (d, t) in result.iter().enumerate() {
            if let Some(t) = *t {
                matched_track[t] = true;
                let track = &mut self.tracks[t];
                track.filter.update(&detections[d].bbox);
                track.score = detections[d].score;
                if track.vote(detections[d].class_id, detections[d].score) && track.id != 0 {
                    // Another class from now on: another object where this one was (a new id, same motion).
                    track.id = self.next_id;
                    self.next_id += 1;
                }
                track.hits += 1;
                track.missed = 0;
                if track.state == TrackState::Tentative && track.hits >= cfg.min_hits.max(1) {
                    track.id = self.next_id;
                    self.next_id += 1;
                }
                if track.id != 0 {
                    track.state = TrackState::Tracked;
                }
            }
        }
        for (t, track) in self.tracks.iter_mut().enumerate() {
            if !matched_track[t] {
                track.missed += 1;
                if track.state == TrackState::Tracked {
                    track.state = TrackState::Lost;
                }
            }
        }
        // Births: confident detections nobody took.
        let first_frame = self.frames == 1;
        for &d in &unmatched_high {
            if detections[d].score < cfg.new_track_threshold {
                continue;
            }
            let mut track = Track {
                id: 0,
                class_id: detections[d].class_id,
                score: detections[d].score,
                state: TrackState::Tentative,
                filter: BoxFilter::new(&detections[d].bbox),
                hits: 1,
                missed: 0,
                votes: vec![(detections[d].class_id, detections[d].score)],
            };
            // On the first frame everything confident is an object (ByteTrack does the same).
            if first_frame || cfg.min_hits <= 1 {
                track.id = self.next_id;
                self.next_id += 1;
                track.state = TrackState::Tracked;
            }
            result[d] = Some(self.tracks.len());
            self.tracks.push(track);
        }
        let out: Vec<Assignment> = result
            .iter()
            .map(|t| t.map(|t| self.tracks[t].id).filter(|id| *id != 0))
            .collect();
        // Deaths: a tentative track that missed once, a lost one after `lost_frames`.
        self.tracks.retain(|t| match t.state {
            TrackState::Tentative => t.missed == 0,
            TrackState::Lost => t.missed <= cfg.lost_frames,
            TrackState::Tracked => true,
        });
        out
    }

    /// Optimal matching of `tracks` to `dets` (indices) on 1 - IoU (plus a class change's cost, or within a
    /// class); pairs below `min_iou` are not matches. Returns (matches as (track, detection)), unmatched tracks, unmatched detections.
    #[allow(clippy::type_complexity)]
    fn associate(
        &self,
        tracks: &[usize],
        dets: &[usize],
        detections: &[TrackInput],
        min_iou: f32,
    ) -> (Vec<(usize, usize)>, Vec<usize>, Vec<usize>) {
        const NO: f64 = 1e6;
        let mut costs = Vec::with_capacity(tracks.len() * dets.len());
        for &t in tracks {
            let tb = self.tracks[t].bbox();
            for &d in dets {
                let det = &detections[d];
                let same_class = det.class_id == self.tracks[t].class_id;
                let iou = if same_class || self.config.cross_class {
                    tb.iou(&det.bbox)
                } else {
                    0.0
                };
                let change = if same_class { 0.0 } else { CLASS_CHANGE_COST };
                costs.push(if iou >= min_iou && iou > 0.0 {
                    1.0 - iou as f64 + change
                } else {
                    NO
                });
            }
        }
        let a = assign(&costs, tracks.len(), dets.len());
        let mut matched = Vec::new();
        let mut det_taken = vec![false; dets.len()];
        let mut unmatched_tracks = Vec::new();
        for (ti, col) in a.iter().enumerate() {
            match col {
                Some(c) if costs[ti * dets.len() + c] < NO => {
                    matched.push((tracks[ti], dets[*c]));
                    det_taken[*c] = true;
                }
                _ => unmatched_tracks.push(tracks[ti]),
            }
        }
        let unmatched_dets = dets
            .iter()
            .zip(&det_taken)
            .filter(|(_, taken)| !**taken)
            .map(|(d, _)| *d)
            .collect();
        (matched, unmatched_tracks, unmatched_dets)
    }
}

/// Per detection, whether a more confident detection of another class covers the same object (IoU at least
/// `SAME_OBJECT_IOU`).
fn same_object_as_a_better_one(detections: &[TrackInput]) -> Vec<bool> {
    detections
        .iter()
        .enumerate()
        .map(|(i, d)| {
            detections.iter().enumerate().any(|(j, o)| {
                o.class_id != d.class_id
                    && (o.score > d.score || (o.score == d.score && j < i))
                    && o.bbox.iou(&d.bbox) >= SAME_OBJECT_IOU
            })
        })
        .collect()
}

/// The baseline: plain greedy IoU matching of each frame's detections to the previous frame's boxes (the method
/// of GStreamer's `ioutracker`), for comparison.
#[derive(Debug, Clone, Default)]
pub struct GreedyIouTracker {
    previous: Vec<(u64, u32, BBox)>,
    next_id: u64,
    pub min_iou: f32,
}

impl GreedyIouTracker {
    pub fn new(min_iou: f32) -> Self {
        Self {
            previous: Vec::new(),
            next_id: 1,
            min_iou,
        }
    }

    pub fn update(&mut self, detections: &[TrackInput]) -> Vec<Assignment> {
        let mut pairs: Vec<(f32, usize, usize)> = Vec::new();
        for (d, det) in detections.iter().enumerate() {
            for (p, (_, class_id, b)) in self.previous.iter().enumerate() {
                let iou = if *class_id == det.class_id {
                    b.iou(&det.bbox)
                } else {
                    0.0
                };
                if iou >= self.min_iou && iou > 0.0 {
                    pairs.push((iou, d, p));
                }
            }
        }
        pairs.sort_by(|a, b| b.0.total_cmp(&a.0));
        let mut ids = vec![None; detections.len()];
        let mut used = vec![false; self.previous.len()];
        for (_, d, p) in pairs {
            if ids[d].is_none() && !used[p] {
                ids[d] = Some(self.previous[p].0);
                used[p] = true;
            }
        }
        for id in ids.iter_mut().filter(|id| id.is_none()) {
            *id = Some(self.next_id);
            self.next_id += 1;
        }
        self.previous = detections
            .iter()
            .zip(&ids)
            .map(|(det, id)| (id.expect("every detection has an id now"), det.class_id, det.bbox))
            .collect();
        ids
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn det(class_id: u32, score: f32, x: f32, y: f32) -> TrackInput {
        TrackInput {
            class_id,
            score,
            bbox: BBox::new(x, y, x + 40.0, y + 40.0),
        }
    }

    #[test]
    fn a_moving_object_keeps_its_id_and_the_filter_learns_its_velocity() {
        let mut t = Tracker::new(TrackerConfig::default());
        let mut ids = Vec::new();
        for f in 0..30 {
            let a = t.update(&[det(1, 0.9, 10.0 + 5.0 * f as f32, 100.0)]);
            ids.push(a[0]);
        }
        assert!(ids.iter().all(|i| *i == Some(1)), "{ids:?}");
        // Five frames without detections: the prediction keeps moving at ~5 px/frame.
        for _ in 0..5 {
            t.update(&[]);
        }
        let b = t.tracks()[0].bbox();
        let expected_x0 = 10.0 + 5.0 * 34.0;
        assert!(
            (b.x0 - expected_x0).abs() < 6.0,
            "predicted x0 {} vs {expected_x0}",
            b.x0
        );
        // It is picked up again where the motion model says.
        let a = t.update(&[det(1, 0.9, 10.0 + 5.0 * 35.0, 100.0)]);
        assert_eq!(a[0], Some(1));
    }

    #[test]
    fn low_score_detections_continue_a_track_but_never_start_one() {
        let mut t = Tracker::new(TrackerConfig::default());
        assert_eq!(t.update(&[det(1, 0.9, 100.0, 100.0)])[0], Some(1));
        // Occluded: the score dips to 0.2, the track goes on.
        for f in 1..10 {
            assert_eq!(t.update(&[det(1, 0.2, 100.0 + f as f32, 100.0)])[0], Some(1));
        }
        // A low-score detection elsewhere starts nothing.
        let a = t.update(&[det(1, 0.95, 110.0, 100.0), det(1, 0.3, 400.0, 400.0)]);
        assert_eq!(a, vec![Some(1), None]);
        assert_eq!(t.tracks().len(), 1);
    }

    #[test]
    fn crossing_objects_of_two_classes_keep_their_ids_and_new_ones_need_two_hits() {
        let mut t = Tracker::new(TrackerConfig::default());
        let first = t.update(&[det(1, 0.9, 0.0, 100.0), det(2, 0.9, 300.0, 100.0)]);
        assert_eq!(first, vec![Some(1), Some(2)]);
        for f in 1..60 {
            let x = f as f32 * 5.0;
            let a = t.update(&[det(1, 0.9, x, 100.0), det(2, 0.9, 300.0 - x, 100.0)]);
            assert_eq!(a, vec![Some(1), Some(2)], "frame {f}");
        }
        // A newcomer after the first frame is tentative for one frame, then gets the next id.
        let a = t.update(&[det(3, 0.9, 500.0, 400.0)]);
        assert_eq!(a, vec![None]);
        let a = t.update(&[det(3, 0.9, 502.0, 400.0)]);
        assert_eq!(a, vec![Some(3)]);
    }

    #[test]
    fn a_far_object_whose_class_flips_keeps_its_id_and_its_class_is_the_vote() {
        // Class 1 on most frames, class 2 on every third: one identity, reported as class 1.
        let across = TrackerConfig {
            cross_class: true,
            ..TrackerConfig::default()
        };
        let mut t = Tracker::new(across);
        for f in 0..30 {
            let class = if f % 3 == 2 { 2 } else { 1 };
            let a = t.update(&[det(class, 0.8, 100.0 + f as f32, 100.0)]);
            assert_eq!(a, vec![Some(1)], "frame {f}");
            assert_eq!(t.tracks()[0].class_id, 1, "frame {f}");
        }
        let share = t.tracks()[0].class_confidence();
        assert!((0.5..0.9).contains(&share), "{share}");
        // Then class 2 for good: it takes over within frames (at once here: it had votes already) and is
        // another object (a new id).
        let ids: Vec<Assignment> = (30..45)
            .flat_map(|f| t.update(&[det(2, 0.8, 100.0 + f as f32, 100.0)]))
            .collect();
        let switch = ids.iter().position(|i| *i == Some(2)).expect("a new id");
        assert!(switch <= 10 && ids[switch..].iter().all(|i| *i == Some(2)), "{ids:?}");
        assert_eq!(t.tracks()[0].class_id, 2);
        // Within a class only (the behaviour before), a flipped detection is nobody's: a third go untracked.
        let mut t = Tracker::new(TrackerConfig {
            cross_class: false,
            ..TrackerConfig::default()
        });
        let ids: Vec<Assignment> = (0..30)
            .flat_map(|f| t.update(&[det(if f % 3 == 2 { 2 } else { 1 }, 0.8, 100.0 + f as f32, 100.0)]))
            .collect();
        assert_eq!(ids.iter().filter(|i| i.is_none()).count(), 10, "{ids:?}");
    }

    #[test]
    fn of_two_equal_overlaps_the_same_class_wins() {
        let mut t = Tracker::new(TrackerConfig {
            cross_class: true,
            ..TrackerConfig::default()
        });
        assert_eq!(
            t.update(&[det(1, 0.9, 100.0, 100.0), det(2, 0.9, 130.0, 100.0)]),
            vec![Some(1), Some(2)]
        );
        // Each comes back nearer the other's track (IoU 0.57 against 0.36): IoU alone would swap the ids.
        let a = t.update(&[det(2, 0.9, 111.0, 100.0), det(1, 0.9, 119.0, 100.0)]);
        assert_eq!(a, vec![Some(2), Some(1)]);
    }

    #[test]
    fn lost_tracks_die_after_lost_frames() {
        let mut t = Tracker::new(TrackerConfig {
            lost_frames: 3,
            ..TrackerConfig::default()
        });
        t.update(&[det(1, 0.9, 10.0, 10.0)]);
        for _ in 0..3 {
            t.update(&[]);
            assert_eq!(t.tracks().len(), 1);
        }
        t.update(&[]);
        assert!(t.tracks().is_empty());
    }

    #[test]
    fn the_greedy_baseline_matches_by_overlap_only() {
        let mut g = GreedyIouTracker::new(0.3);
        assert_eq!(g.update(&[det(1, 0.9, 0.0, 0.0)]), vec![Some(1)]);
        assert_eq!(g.update(&[det(1, 0.9, 5.0, 0.0)]), vec![Some(1)]);
        // A one-frame gap breaks the identity (no motion model, no memory).
        g.update(&[]);
        assert_eq!(g.update(&[det(1, 0.9, 10.0, 0.0)]), vec![Some(2)]);
    }
}
