#!/usr/bin/env python3
"""IDF1, MOTA and identity switches by py-motmetrics (an independent scorer) from two detectionjson logs of the
same frames: TRUTH (source=ground-truth, detecttestsrc's object identities as track_id) and DETECTIONS (through
detectiontrack). Hypotheses are the tracked detections (those with a track_id); a match needs IoU >= 0.5,
whatever the class (the MOT Challenge's rule). Prints one JSON object."""
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
    summary = mm.metrics.create().compute(acc, metrics=["idf1", "mota", "num_switches", "num_unique_objects"])
    row = summary.iloc[0]
    print(json.dumps({
        "idf1": round(float(row["idf1"]), 4),
        "mota": round(float(row["mota"]), 4),
        "id_switches": int(row["num_switches"]),
        "objects": int(row["num_unique_objects"]),
    }))


if __name__ == "__main__":
    main()
