#!/usr/bin/env python3
"""IDF1, MOTA and identity switches by py-motmetrics (an independent scorer) from two detectionjson logs of the
same frames: TRUTH (source=ground-truth, detecttestsrc's object identities as track_id) and DETECTIONS (through
detectiontrack). Hypotheses are the tracked detections (those with a track_id); a match needs IoU >= 0.5,
whatever the class (the MOT Challenge's rule). Prints one JSON object, with two figures that say where the IDF1
is lost: `ceiling_idf1`, the IDF1 the same tracked boxes would reach if each carried its object's true identity
(their F1 at IoU 0.5: what no association can beat), and `switches_in_overlap`, the identity switches of objects
that overlapped another object in the frames between their last match and the switch (ground truth lists the
signs that others hide, in drawing order)."""
import json
import sys

import motmetrics as mm
import numpy as np


def frames(path):
    out = {}
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            record = json.loads(line)
            boxes = [
                (d["track_id"], [d["x"], d["y"], d["width"], d["height"]])
                for d in record.get("detections", [])
                if d.get("track_id") is not None
            ]
            out[record["frame"]] = boxes
    return out


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: motmetrics_score.py TRUTH.jsonl DETECTIONS.jsonl")
    truth, hyp = frames(sys.argv[1]), frames(sys.argv[2])
    acc = mm.MOTAccumulator(auto_id=False)
    for frame in sorted(truth):
        gt, hy = truth[frame], hyp.get(frame, [])
        dist = mm.distances.iou_matrix(
            np.array([b for _, b in gt], dtype=float).reshape(-1, 4),
            np.array([b for _, b in hy], dtype=float).reshape(-1, 4),
            max_iou=0.5,
        )
        acc.update([i for i, _ in gt], [i for i, _ in hy], dist, frameid=frame)
    summary = mm.metrics.create().compute(
        acc, metrics=["idf1", "mota", "num_switches", "num_unique_objects", "precision", "recall"])
    row = summary.iloc[0]
    precision, recall = float(row["precision"]), float(row["recall"])
    print(json.dumps({
        "idf1": round(float(row["idf1"]), 4),
        "mota": round(float(row["mota"]), 4),
        "id_switches": int(row["num_switches"]),
        "objects": int(row["num_unique_objects"]),
        "ceiling_idf1": round(2 * precision * recall / (precision + recall), 4) if precision + recall else 0.0,
        "switches_in_overlap": switches_in_overlap(acc.mot_events, truth),
    }))


def overlaps(a, b):
    return min(a[0] + a[2], b[0] + b[2]) > max(a[0], b[0]) and min(a[1] + a[3], b[1] + b[3]) > max(a[1], b[1])


def switches_in_overlap(events, truth):
    """Switches of an object that overlapped another one in any frame since its last match (and 3 frames before)."""
    boxes = {frame: dict(objects) for frame, objects in truth.items()}
    last_match = {}
    count = 0
    for (frame, _), event in events.iterrows():
        if event.Type not in ("MATCH", "SWITCH"):
            continue
        oid = event.OId
        if event.Type == "SWITCH":
            since = last_match.get(oid, frame) - 3
            count += any(
                overlaps(boxes[f][oid], box)
                for f in range(since, frame + 1) if oid in boxes.get(f, {})
                for other, box in boxes[f].items() if other != oid
            )
        last_match[oid] = frame
    return count


if __name__ == "__main__":
    main()
