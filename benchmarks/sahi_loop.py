#!/usr/bin/env python3
"""The sliced-inference loop a Python user writes after SAHI (slice the frame, run every slice, shift the boxes
back, merge with NMS), with OpenCV and onnxruntime, for benchmarks/small_objects: read NV12 frames from a raw
file, cut each into COLUMNS x ROWS slices sharing OVERLAP pixels (the tiles mobilenetdetect cuts), cvtColor +
resize + normalise each slice, run the SSD model slice after slice, decode against the anchors in the model's
metadata, then class-aware NMS over the whole frame.

    sahi_loop.py MODEL RAW WIDTH HEIGHT COLUMNS ROWS OVERLAP THREADS [--warmup N]

Prints 'RESULT <frames/s> <peak MB>' (frames/s after the warm-up frames, peak resident memory)."""
import argparse
import resource
import time

import cv2
import numpy as np
import onnxruntime as ort

p = argparse.ArgumentParser()
p.add_argument("model")
p.add_argument("raw")
p.add_argument("width", type=int)
p.add_argument("height", type=int)
p.add_argument("columns", type=int)
p.add_argument("rows", type=int)
p.add_argument("overlap", type=int)
p.add_argument("threads", type=int)
p.add_argument("--warmup", type=int, default=5)
p.add_argument("--score-threshold", type=float, default=0.05)
p.add_argument("--iou-threshold", type=float, default=0.45)
a = p.parse_args()

options = ort.SessionOptions()
options.intra_op_num_threads = a.threads
session = ort.InferenceSession(a.model, options, providers=["CPUExecutionProvider"])
meta = session.get_modelmeta().custom_metadata_map
anchors = np.array(
    [[float(v) for v in line.split()] for line in meta["mobilenetdetect.anchors"].splitlines() if line.strip()],
    dtype=np.float32,
)  # cy, cx, h, w
input_name = session.get_inputs()[0].name
_, _, in_h, in_w = session.get_inputs()[0].shape


def spans(length, n, overlap):
    """n equal spans of length pixels sharing overlap pixels, the first at 0 and the last flush with the end."""
    if n <= 1:
        return [(0, length)]
    overlap = min(overlap, length // n)
    size = min(-(-(length + (n - 1) * overlap) // n), length)
    starts = [((length - size) * i // (n - 1)) & ~1 for i in range(n)]
    return [(s, size if i < n - 1 else length - s) for i, s in enumerate(starts)]


slices = [(x, y, w, h) for y, h in spans(a.height, a.rows, a.overlap) for x, w in spans(a.width, a.columns, a.overlap)]


def detect_slice(rgb, x0, y0, w, h):
    small = cv2.resize(rgb[y0:y0 + h, x0:x0 + w], (in_w, in_h), interpolation=cv2.INTER_LINEAR)
    x = ((small.astype(np.float32) - 127.5) / 127.5).transpose(2, 0, 1)[np.newaxis]
    encodings, logits = session.run(None, {input_name: np.ascontiguousarray(x)})
    e, z = encodings[0], logits[0]
    scores = np.exp(z - z.max(axis=1, keepdims=True))
    scores /= scores.sum(axis=1, keepdims=True)
    cls = scores[:, 1:].argmax(axis=1)
    best = scores[np.arange(len(cls)), cls + 1]
    keep = best >= a.score_threshold
    e, an = e[keep], anchors[keep]
    cy = e[:, 0] / 10.0 * an[:, 2] + an[:, 0]
    cx = e[:, 1] / 10.0 * an[:, 3] + an[:, 1]
    bh = np.exp(e[:, 2] / 5.0) * an[:, 2]
    bw = np.exp(e[:, 3] / 5.0) * an[:, 3]
    boxes = np.stack([x0 + (cx - bw / 2) * w, y0 + (cy - bh / 2) * h, bw * w, bh * h], axis=1)
    return boxes, best[keep], cls[keep] + 1


def detect(nv12):
    rgb = cv2.cvtColor(nv12, cv2.COLOR_YUV2RGB_NV12)
    parts = [detect_slice(rgb, *s) for s in slices]
    boxes = np.concatenate([b for b, _, _ in parts])
    scores = np.concatenate([s for _, s, _ in parts])
    classes = np.concatenate([c for _, _, c in parts])
    if len(boxes) == 0:
        return []
    kept = cv2.dnn.NMSBoxesBatched(boxes.tolist(), scores.tolist(), classes.tolist(), a.score_threshold,
                                   a.iou_threshold)
    return [(int(classes[i]), float(scores[i]), boxes[i]) for i in np.array(kept).flatten()]


frame_bytes = a.width * a.height * 3 // 2
count, started = 0, None
with open(a.raw, "rb") as f:
    while True:
        data = f.read(frame_bytes)
        if len(data) < frame_bytes:
            break
        detect(np.frombuffer(data, np.uint8).reshape(a.height * 3 // 2, a.width))
        count += 1
        if count == a.warmup:
            started = time.perf_counter()
frames = count - a.warmup
fps = frames / (time.perf_counter() - started)
print(f"RESULT {fps} {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0}")
