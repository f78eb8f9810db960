"""What the Python benchmark loops (opencv_loop.py, sahi_loop.py) share: the ONNX Runtime session of an ssd-raw
model, its anchors from the model's metadata, the decoding of one run into scored boxes, and the timed loop over
the raw frames of a file."""
import argparse
import resource
import time

import numpy as np
import onnxruntime as ort


def parse_args(slicing, score_threshold):
    """MODEL RAW WIDTH HEIGHT [COLUMNS ROWS OVERLAP] THREADS [--warmup N] [--score-threshold S] [--iou-threshold I]"""
    p = argparse.ArgumentParser()
    p.add_argument("model")
    p.add_argument("raw")
    p.add_argument("width", type=int)
    p.add_argument("height", type=int)
    if slicing:
        p.add_argument("columns", type=int)
        p.add_argument("rows", type=int)
        p.add_argument("overlap", type=int)
    p.add_argument("threads", type=int)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--score-threshold", type=float, default=score_threshold)
    p.add_argument("--iou-threshold", type=float, default=0.45)
    return p.parse_args()


class SsdModel:
    def __init__(self, path, threads):
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        self.session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        meta = self.session.get_modelmeta().custom_metadata_map
        self.anchors = np.array(
            [[float(v) for v in line.split()] for line in meta["mobilenetdetect.anchors"].splitlines()
             if line.strip()],
            dtype=np.float32,
        )  # cy, cx, h, w
        self.input_name = self.session.get_inputs()[0].name
        _, _, self.height, self.width = self.session.get_inputs()[0].shape

    def detect(self, rgb, score_threshold):
        """Runs an RGB image already at the input size: boxes (x, y, w, h normalised), scores, class ids (from 1)."""
        x = ((rgb.astype(np.float32) - 127.5) / 127.5).transpose(2, 0, 1)[np.newaxis]
        encodings, logits = self.session.run(None, {self.input_name: np.ascontiguousarray(x)})
        e, z = encodings[0], logits[0]
        scores = np.exp(z - z.max(axis=1, keepdims=True))
        scores /= scores.sum(axis=1, keepdims=True)
        cls = scores[:, 1:].argmax(axis=1)
        best = scores[np.arange(len(cls)), cls + 1]
        keep = best >= score_threshold
        e, an = e[keep], self.anchors[keep]
        cy = e[:, 0] / 10.0 * an[:, 2] + an[:, 0]
        cx = e[:, 1] / 10.0 * an[:, 3] + an[:, 1]
        h = np.exp(e[:, 2] / 5.0) * an[:, 2]
        w = np.exp(e[:, 3] / 5.0) * an[:, 3]
        return np.stack([cx - w / 2, cy - h / 2, w, h], axis=1), best[keep], cls[keep] + 1


def run_loop(raw, width, height, warmup, detect):
    """Calls detect on each YUV 4:2:0 frame of the raw file; prints 'RESULT <frames/s> <peak MB>' (frames/s after
    the warm-up frames, peak resident memory)."""
    frame_bytes = width * height * 3 // 2
    count, started = 0, None
    with open(raw, "rb") as f:
        while True:
            data = f.read(frame_bytes)
            if len(data) < frame_bytes:
                break
            detect(np.frombuffer(data, np.uint8).reshape(height * 3 // 2, width))
            count += 1
            if count == warmup:
                started = time.perf_counter()
    fps = (count - warmup) / (time.perf_counter() - started)
    print(f"RESULT {fps} {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0}")
