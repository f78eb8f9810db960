#!/usr/bin/env python3
"""The sliced-inference loop a Python user writes after SAHI (slice the frame, run every slice, shift the boxes
back, merge with NMS), with OpenCV and onnxruntime, for benchmarks/small_objects: read NV12 frames from a raw
file, cut each into COLUMNS x ROWS slices sharing OVERLAP pixels (the tiles mobilenetdetect cuts), cvtColor +
resize + normalise each slice, run the SSD model slice after slice, decode against the anchors in the model's
metadata, then class-aware NMS over the whole frame.

    sahi_loop.py MODEL RAW WIDTH HEIGHT COLUMNS ROWS OVERLAP THREADS [--warmup N]

Prints 'RESULT <frames/s> <peak MB>' (frames/s after the warm-up frames, peak resident memory)."""
import cv2
import numpy as np

from ssd_loop import SsdModel, parse_args, run_loop

a = parse_args(slicing=True, score_threshold=0.05)
model = SsdModel(a.model, a.threads)


def spans(length, n, overlap):
    """n equal spans of length pixels sharing overlap pixels, the first at 0 and the last flush with the end."""
    if n <= 1:
        return [(0, length)]
    overlap = min(overlap, length // n)
    size = -(-(length + (n - 1) * overlap) // n) + 1
    if size < length:
        size += (length - size) & 1
    size = min(size, length)
    starts = [((length - size) * i // (n - 1)) & ~1 for i in range(n)]
    return [(s, size if i < n - 1 else length - s) for i, s in enumerate(starts)]


slices = [(x, y, w, h) for y, h in spans(a.height, a.rows, a.overlap) for x, w in spans(a.width, a.columns, a.overlap)]


def detect(nv12):
    rgb = cv2.cvtColor(nv12, cv2.COLOR_YUV2RGB_NV12)
    parts = []
    for x0, y0, w, h in slices:
        small = cv2.resize(rgb[y0:y0 + h, x0:x0 + w], (model.width, model.height), interpolation=cv2.INTER_LINEAR)
        boxes, scores, classes = model.detect(small, a.score_threshold)
        parts.append((boxes * np.array([w, h, w, h], dtype=np.float32) + np.array([x0, y0, 0, 0]), scores, classes))
    boxes = np.concatenate([b for b, _, _ in parts])
    scores = np.concatenate([s for _, s, _ in parts])
    classes = np.concatenate([c for _, _, c in parts])
    if len(boxes) == 0:
        return []
    kept = cv2.dnn.NMSBoxesBatched(boxes.tolist(), scores.tolist(), classes.tolist(), a.score_threshold,
                                   a.iou_threshold)
    return [(int(classes[i]), float(scores[i]), boxes[i]) for i in np.array(kept).flatten()]


run_loop(a.raw, a.width, a.height, a.warmup, detect)
