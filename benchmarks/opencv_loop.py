#!/usr/bin/env python3
"""The detection loop a Python user writes with OpenCV and onnxruntime, for the concurrent_inference benchmark:
read I420 frames from a raw file, cvtColor + resize + normalise, run the SSD model, decode the boxes against
the anchors in the model's metadata and apply class-aware NMS (OpenCV), frame after frame.

    opencv_loop.py MODEL RAW WIDTH HEIGHT THREADS [--warmup N]

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
p.add_argument("threads", type=int)
p.add_argument("--warmup", type=int, default=5)
p.add_argument("--score-threshold", type=float, default=0.5)
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


def detect(i420):
    rgb = cv2.cvtColor(i420, cv2.COLOR_YUV2RGB_I420)
    small = cv2.resize(rgb, (in_w, in_h), interpolation=cv2.INTER_LINEAR)
    x = ((small.astype(np.float32) - 127.5) / 127.5).transpose(2, 0, 1)[np.newaxis]
    encodings, logits = session.run(None, {input_name: np.ascontiguousarray(x)})
    e, z = encodings[0], logits[0]
    scores = np.exp(z - z.max(axis=1, keepdims=True))
    scores /= scores.sum(axis=1, keepdims=True)
    cls = scores[:, 1:].argmax(axis=1)
    best = scores[np.arange(len(cls)), cls + 1]
    keep = best >= a.score_threshold
    if not keep.any():
        return []
    e, an = e[keep], anchors[keep]
    cy = e[:, 0] / 10.0 * an[:, 2] + an[:, 0]
    cx = e[:, 1] / 10.0 * an[:, 3] + an[:, 1]
    h = np.exp(e[:, 2] / 5.0) * an[:, 2]
    w = np.exp(e[:, 3] / 5.0) * an[:, 3]
    boxes = np.stack([(cx - w / 2) * a.width, (cy - h / 2) * a.height, w * a.width, h * a.height], axis=1)
    kept = cv2.dnn.NMSBoxesBatched(boxes.tolist(), best[keep].tolist(), (cls[keep] + 1).tolist(),
                                   a.score_threshold, a.iou_threshold)
    return [(int(cls[keep][i]) + 1, float(best[keep][i]), boxes[i]) for i in np.array(kept).flatten()]


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
