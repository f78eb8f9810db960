#!/usr/bin/env python3
"""Whether a model gives another's detections, box by box: REFERENCE and CANDIDATE are detectionjson logs of the
same frames (e.g. a model and its import-then-export through mobilenetdetect). Each reference box is paired with
the candidate's box of the same label that overlaps it most on that frame; prints one JSON object: the boxes,
the share of them with a partner at IoU >= 0.95 and a score within 0.03 (`--iou`, `--score`), the lowest and the
median IoU, and the largest score difference. Standard library only.

    python3 benchmarks/same_detections.py reference.jsonl candidate.jsonl
"""
import argparse
import json
import statistics


def frames(path):
    out = {}
    with open(path) as f:
        for line in f:
            if line.strip():
                record = json.loads(line)
                out[record["frame"]] = record.get("detections", [])
    return out


def iou(a, b):
    ix = max(0, min(a["x"] + a["width"], b["x"] + b["width"]) - max(a["x"], b["x"]))
    iy = max(0, min(a["y"] + a["height"], b["y"] + b["height"]) - max(a["y"], b["y"]))
    inter = ix * iy
    union = a["width"] * a["height"] + b["width"] * b["height"] - inter
    return inter / union if union > 0 else 0.0


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("reference")
    p.add_argument("candidate")
    p.add_argument("--iou", type=float, default=0.95, help="IoU a pair needs (default 0.95)")
    p.add_argument("--score", type=float, default=0.03, help="largest score difference of a pair (default 0.03)")
    args = p.parse_args()
    reference, candidate = frames(args.reference), frames(args.candidate)
    ious, score_diffs, agreeing = [], [], 0
    for frame, boxes in reference.items():
        others = candidate.get(frame, [])
        for box in boxes:
            same_label = [o for o in others if o["label"] == box["label"]]
            best = max(same_label, key=lambda o: iou(box, o), default=None)
            overlap = iou(box, best) if best else 0.0
            diff = abs(box["confidence"] - best["confidence"]) if best else 1.0
            ious.append(overlap)
            score_diffs.append(diff)
            agreeing += overlap >= args.iou and diff <= args.score
    n = len(ious)
    print(json.dumps({
        "boxes": n,
        "agreeing": round(agreeing / n, 4) if n else None,
        "min_iou": round(min(ious), 4) if n else None,
        "median_iou": round(statistics.median(ious), 4) if n else None,
        "max_score_diff": round(max(score_diffs), 4) if n else None,
    }))


if __name__ == "__main__":
    main()
