#!/usr/bin/env python3
"""The detection loop a Python user writes with OpenCV and onnxruntime, for the concurrent_inference benchmark:
read I420 frames from a raw file, cvtColor + resize + normalise, run the SSD model, decode the boxes against
the anchors in the model's metadata and apply class-aware NMS (OpenCV), frame after frame.

    opencv_loop.py MODEL RAW WIDTH HEIGHT THREADS [--warmup N]

Prints 'RESULT <frames/s> <peak MB>' (frames/s after the warm-up frames, peak resident memory)."""
import cv2
import numpy as np

from ssd_loop import SsdModel, parse_args, run_loop

a = parse_args(slicing=False, score_threshold=0.5)
model = SsdModel(a.model, a.threads)


def detect(i420):
    rgb = cv2.cvtColor(i420, cv2.COLOR_YUV2RGB_I420)
    small = cv2.resize(rgb, (model.width, model.height), interpolation=cv2.INTER_LINEAR)
    boxes, scores, classes = model.detect(small, a.score_threshold)
    if len(boxes) == 0:
        return []
    boxes = boxes * np.array([a.width, a.height, a.width, a.height], dtype=np.float32)
    kept = cv2.dnn.NMSBoxesBatched(boxes.tolist(), scores.tolist(), classes.tolist(), a.score_threshold,
                                   a.iou_threshold)
    return [(int(classes[i]), float(scores[i]), boxes[i]) for i in np.array(kept).flatten()]


run_loop(a.raw, a.width, a.height, a.warmup, detect)
