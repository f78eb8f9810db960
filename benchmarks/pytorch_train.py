"""PyTorch twin of `mobilenet-trainer train`'s default CPU recipe, for benchmarks/training_race: the same
MobileNetV2-SSDLite (pytorch_reference.py), ImageNet backbone frozen with its features cached for 4 versions of
every training image (the first plain, the others augmented), the same augmentation (SSD zoom-out, IoU-constrained
crop, flip, photometric distortion; trainer/src/augment.rs), the same anchors (read from the burn run's exported
model, so fitted shapes are identical), the same matching and MultiBox loss, AdamW with linear warmup and cosine
decay, batch 16, on 2 threads.

    python3 benchmarks/pytorch_train.py --data CAPTURES --anchors-from burn-run/model.onnx --weights W.pth --out DIR

After every epoch it runs the model over the validation split and writes DIR/epoch-N.jsonl (detectionjson lines,
score threshold 0.01, class-aware NMS 0.45, at most 100 boxes, like the trainer's evaluation); DIR/truth.jsonl
holds the validation ground truth, so `mobilenet-trainer score` rates both trainers with one mAP implementation.
DIR/metrics.csv: epoch, loss, seconds (wall time of the epoch: feature caching in the first, training and the
validation pass, as in the trainer's metrics.csv), training images/s.
"""
import argparse
import json
import math
import os
import sys
import time
import xml.etree.ElementTree as ET

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from pytorch_reference import SsdLite, multibox_loss  # noqa: E402

INPUT_MEAN = np.array([123.675, 116.28, 103.53], np.float32)
INPUT_STD = np.array([58.395, 57.12, 57.375], np.float32)
CROP_MIN_IOU = [None, 0.1, 0.3, 0.5, 0.7, 0.0]
MATCH_IOU = 0.5
SCORE_THRESHOLD, NMS_IOU, MAX_DETECTIONS = 0.01, 0.45, 100


def fail(message):
    sys.exit(f"pytorch_train.py: {message}")


# ---------------------------------------------------------------- data


def read_labels(data):
    path = os.path.join(data, "labels.txt")
    try:
        names = [line.strip() for line in open(path) if line.strip() and not line.startswith("#")]
    except OSError as e:
        fail(f"{path}: {e}")
    if names and names[0].lower() in ("background", "__background__", "bg"):
        names = names[1:]
    return names


def read_split(data, split):
    path = os.path.join(data, "ImageSets", "Main", f"{split}.txt")
    try:
        return [line.split()[0] for line in open(path) if line.strip()]
    except OSError as e:
        fail(f"{path}: {e} (the race needs a local capture with ImageSets/Main lists)")


def read_sample(data, image_id, class_of):
    xml_path = os.path.join(data, "Annotations", f"{image_id}.xml")
    try:
        root = ET.parse(xml_path).getroot()
    except (OSError, ET.ParseError) as e:
        fail(f"{xml_path}: {e}")
    size = root.find("size")
    declared = (float(size.findtext("width", "0")), float(size.findtext("height", "0"))) if size is not None else (0, 0)
    boxes, classes = [], []
    for o in root.iter("object"):
        name = o.findtext("name", "").strip().lower()
        if name not in class_of:
            continue
        bb = o.find("bndbox")
        boxes.append([float(bb.findtext(k)) for k in ("xmin", "ymin", "xmax", "ymax")])
        classes.append(class_of[name])
    return {
        "image": os.path.join(data, "JPEGImages", root.findtext("filename", f"{image_id}.jpg")),
        "declared": declared,
        "boxes": np.array(boxes, np.float32).reshape(-1, 4),
        "classes": np.array(classes, np.int64),
    }


def decode(sample):
    rgb = np.asarray(Image.open(sample["image"]).convert("RGB"))
    h, w = rgb.shape[:2]
    dw, dh = sample["declared"]
    scale = np.array([w / dw if dw else 1, h / dh if dh else 1] * 2, np.float32)
    return rgb, sample["boxes"] * scale, sample["classes"]


# ---------------------------------------------------------------- augmentation (trainer/src/augment.rs)


def iou_one_to_many(box, boxes):
    x0 = np.maximum(box[0], boxes[:, 0])
    y0 = np.maximum(box[1], boxes[:, 1])
    x1 = np.minimum(box[2], boxes[:, 2])
    y1 = np.minimum(box[3], boxes[:, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return inter / np.maximum(area + areas - inter, 1e-12)


def sample_window(rgb, window, size, flip):
    """Bilinear sampling of `window` (image coordinates, may extend past the image; outside reads the mean)."""
    h, w = rgb.shape[:2]
    sx, sy = (window[2] - window[0]) / size, (window[3] - window[1]) / size
    fx = window[0] + (np.arange(size) + 0.5) * sx - 0.5
    fy = window[1] + (np.arange(size) + 0.5) * sy - 0.5
    x0f, y0f = np.floor(fx), np.floor(fy)
    wx = (fx - x0f).astype(np.float32)[None, :, None]
    wy = (fy - y0f).astype(np.float32)[:, None, None]
    x0, y0 = x0f.astype(np.int64), y0f.astype(np.int64)
    img = rgb.astype(np.float32)

    def tap(ys, xs):
        inside = ((ys >= 0) & (ys < h))[:, None] & ((xs >= 0) & (xs < w))[None, :]
        v = img[np.clip(ys, 0, h - 1)][:, np.clip(xs, 0, w - 1)]
        return np.where(inside[..., None], v, INPUT_MEAN)

    top = tap(y0, x0) * (1 - wx) + tap(y0, x0 + 1) * wx
    bottom = tap(y0 + 1, x0) * (1 - wx) + tap(y0 + 1, x0 + 1) * wx
    out = top * (1 - wy) + bottom * wy
    return out[:, ::-1] if flip else out


def distort(pixels, rng):
    """SSD's photometric distortion on 0..255 HxWx3 values (the same draws, in the same order, as augment.rs)."""
    brightness = rng.uniform(-32, 32) if rng.random() < 0.5 else 0.0
    contrast = rng.uniform(0.5, 1.5) if rng.random() < 0.5 else 1.0
    contrast_first = rng.random() < 0.5
    saturation = rng.uniform(0.5, 1.5) if rng.random() < 0.5 else 1.0
    hue = math.radians(rng.uniform(-18, 18)) if rng.random() < 0.5 else 0.0
    c, s, third, s3 = math.cos(hue), math.sin(hue), 1 / 3, math.sqrt(1 / 3)
    rot = np.array([
        [c + (1 - c) * third, third * (1 - c) - s3 * s, third * (1 - c) + s3 * s],
        [third * (1 - c) + s3 * s, c + third * (1 - c), third * (1 - c) - s3 * s],
        [third * (1 - c) - s3 * s, third * (1 - c) + s3 * s, c + third * (1 - c)],
    ], np.float32)
    p = pixels + brightness
    if contrast_first:
        p = p * contrast
    q = p @ rot.T
    luma = q @ np.array([0.299, 0.587, 0.114], np.float32)
    q = luma[..., None] + (q - luma[..., None]) * saturation
    if not contrast_first:
        q = q * contrast
    return np.clip(q, 0, 255)


def prepare(rgb, boxes, classes, size, augment, rng):
    """(3 x size x size normalised input, normalised boxes, classes), as augment.rs's `prepare`."""
    h, w = rgb.shape[:2]
    canvas = (0.0, 0.0, float(w), float(h))
    if augment and rng.random() < 0.5:
        r = rng.uniform(1.0, 3.0)
        cw, ch = w * r, h * r
        left, top = rng.uniform(0, cw - w), rng.uniform(0, ch - h)
        canvas = (-left, -top, cw - left, ch - top)
    window = canvas
    if augment and len(boxes):
        min_iou = CROP_MIN_IOU[rng.integers(len(CROP_MIN_IOU))]
        if min_iou is not None:
            for _ in range(50):
                cw, ch = canvas[2] - canvas[0], canvas[3] - canvas[1]
                ww, wh = rng.uniform(0.3, 1.0) * cw, rng.uniform(0.3, 1.0) * ch
                if ww / wh < 0.5 or ww / wh > 2.0:
                    continue
                x0, y0 = canvas[0] + rng.uniform(0, cw - ww), canvas[1] + rng.uniform(0, ch - wh)
                cand = np.array([x0, y0, x0 + ww, y0 + wh], np.float32)
                if np.all(iou_one_to_many(cand, boxes) < min_iou):
                    continue
                cx, cy = (boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2
                keep = (cx > cand[0]) & (cx < cand[2]) & (cy > cand[1]) & (cy < cand[3])
                if not keep.any():
                    continue
                window = tuple(cand)
                boxes = np.concatenate([np.maximum(boxes[keep, :2], cand[:2]), np.minimum(boxes[keep, 2:], cand[2:])], 1)
                classes = classes[keep]
                break
    flip = augment and rng.random() < 0.5
    pixels = sample_window(rgb, window, size, flip)
    if augment:
        pixels = distort(pixels, rng)
    pixels = ((pixels - INPUT_MEAN) / INPUT_STD).transpose(2, 0, 1)
    ww, wh = window[2] - window[0], window[3] - window[1]
    b = (boxes - np.array([window[0], window[1]] * 2, np.float32)) / np.array([ww, wh] * 2, np.float32)
    if flip:
        b = np.stack([1 - b[:, 2], b[:, 1], 1 - b[:, 0], b[:, 3]], 1)
    b = np.clip(b, 0, 1)
    keep = ((b[:, 2] - b[:, 0]) * size >= 1) & ((b[:, 3] - b[:, 1]) * size >= 1)
    return np.ascontiguousarray(pixels, np.float32), b[keep], classes[keep]


# ---------------------------------------------------------------- anchors, matching, decoding (loss.rs, boxes.rs)


def read_anchors(model_path):
    """The exported model's anchors (`mobilenetdetect.anchors`: `cy cx h w` per line), via ONNX Runtime."""
    import onnxruntime

    meta = onnxruntime.InferenceSession(model_path, providers=["CPUExecutionProvider"]).get_modelmeta()
    text = meta.custom_metadata_map.get("mobilenetdetect.anchors")
    if not text:
        fail(f"{model_path}: no mobilenetdetect.anchors in its metadata (export it with mobilenet-trainer)")
    return torch.tensor([[float(v) for v in line.split()] for line in text.splitlines() if line.strip()])


def corners_of(anchors):
    cy, cx, h, w = anchors.unbind(1)
    return torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], 1)


def box_iou(a, b):
    lt = torch.maximum(a[:, None, :2], b[None, :, :2])
    rb = torch.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = (rb - lt).clamp(min=0).prod(2)
    area = lambda x: (x[:, 2] - x[:, 0]) * (x[:, 3] - x[:, 1])  # noqa: E731
    return inter / (area(a)[:, None] + area(b)[None, :] - inter).clamp(min=1e-12)


def match(anchors, corners, boxes, classes):
    """Per-anchor class ids and TF-style encodings: IoU >= 0.5, and every object keeps its best anchor."""
    a = anchors.shape[0]
    labels, encodings = torch.zeros(a, dtype=torch.long), torch.zeros(a, 4)
    if len(boxes) == 0:
        return labels, encodings
    boxes, classes = torch.from_numpy(boxes), torch.from_numpy(classes)
    iou = box_iou(boxes, corners)
    best_iou, best_target = iou.max(0)
    for t, anchor in enumerate(iou.argmax(1).tolist()):
        best_iou[anchor], best_target[anchor] = 2.0, t
    pos = best_iou >= MATCH_IOU
    labels[pos] = classes[best_target[pos]]
    b, an = boxes[best_target[pos]], anchors[pos]
    cx, cy = (b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2
    w, h = (b[:, 2] - b[:, 0]).clamp(min=1e-6), (b[:, 3] - b[:, 1]).clamp(min=1e-6)
    encodings[pos] = torch.stack([(cy - an[:, 0]) / an[:, 2] * 10, (cx - an[:, 1]) / an[:, 3] * 10,
                                  torch.log(h / an[:, 2]) * 5, torch.log(w / an[:, 3]) * 5], 1)
    return labels, encodings


def detect(loc, logits, anchors):
    """One image's detections after the score threshold and class-aware NMS (evaluate.rs, nms.rs)."""
    scores = logits.softmax(1)[:, 1:]
    idx, cls = (scores >= SCORE_THRESHOLD).nonzero(as_tuple=True)
    if len(idx) == 0:
        return []
    e, an, s = loc[idx], anchors[idx], scores[idx, cls]
    cy, cx = e[:, 0] / 10 * an[:, 2] + an[:, 0], e[:, 1] / 10 * an[:, 3] + an[:, 1]
    h, w = torch.exp(e[:, 2] / 5) * an[:, 2], torch.exp(e[:, 3] / 5) * an[:, 3]
    boxes = torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], 1).clamp(0, 1)
    ok = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1]) & torch.isfinite(boxes).all(1)
    boxes, s, cls = boxes[ok], s[ok], cls[ok] + 1
    order = s.argsort(descending=True)
    boxes, s, cls = boxes[order], s[order], cls[order]
    # Boxes of different classes never overlap once shifted apart by class: one IoU matrix serves every class.
    iou = box_iou(boxes + cls[:, None] * 2.0, boxes + cls[:, None] * 2.0)
    kept = []
    suppressed = torch.zeros(len(s), dtype=torch.bool)
    for i in range(len(s)):
        if suppressed[i]:
            continue
        kept.append(i)
        if len(kept) == MAX_DETECTIONS:
            break
        suppressed |= iou[i] > NMS_IOU
    return [(int(cls[i]), float(s[i]), boxes[i].tolist()) for i in kept]


def learning_rate(step, total, warmup, base, floor=0.02):
    if step < warmup:
        return base * (step + 1) / warmup
    t = min((step - warmup) / max(total - warmup, 1), 1.0)
    return base * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * t)))


def log_line(frame, dets, names):
    return json.dumps({"frame": frame, "detections": [
        {"label": names[c - 1], "confidence": round(s, 6),
         "box": {"x_min": b[0], "y_min": b[1], "x_max": b[2], "y_max": b[3]}} for c, s, b in dets]})


# ---------------------------------------------------------------- training


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True)
    ap.add_argument("--anchors-from", required=True, help="a model exported by mobilenet-trainer (its anchors)")
    ap.add_argument("--weights", required=True, help="torchvision's mobilenet_v2-b0353104.pth")
    ap.add_argument("--out", required=True)
    ap.add_argument("--input-size", type=int, default=160)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--warmup-steps", type=int, default=100)
    ap.add_argument("--weight-decay", type=float, default=1e-4)
    ap.add_argument("--cached-versions", type=int, default=4)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    os.makedirs(args.out, exist_ok=True)
    size, batch = args.input_size, args.batch_size

    names = read_labels(args.data)
    class_of = {n.lower(): i + 1 for i, n in enumerate(names)}
    train = [read_sample(args.data, i, class_of) for i in read_split(args.data, "train")]
    val = [read_sample(args.data, i, class_of) for i in read_split(args.data, "val")]
    anchors = read_anchors(args.anchors_from)
    corners = corners_of(anchors)
    model = SsdLite(len(names) + 1)
    state = torch.load(args.weights, map_location="cpu")
    missing = model.load_state_dict({k: v for k, v in state.items() if k.startswith("features.")}, strict=False)
    assert not [k for k in missing.missing_keys if k.startswith("features.")], missing
    with torch.no_grad():
        n_out = model.heads(*model.eval().backbone(torch.zeros(1, 3, size, size)))[0].shape[1]
    if n_out != len(anchors):
        fail(f"{args.anchors_from}: {len(anchors)} anchors, the network at {size}x{size} predicts {n_out}")
    with open(os.path.join(args.out, "truth.jsonl"), "w") as f:
        for frame, s in enumerate(val):
            w, h = Image.open(s["image"]).size
            dw, dh = s["declared"]
            norm = np.array([dw or w, dh or h] * 2, np.float32)
            dets = [(int(c), 1.0, (b / norm).tolist()) for b, c in zip(s["boxes"], s["classes"])]
            f.write(log_line(frame, dets, names) + "\n")
    print(f"PyTorch {torch.__version__}, {args.threads} threads: {len(train)} training / {len(val)} validation "
          f"images, {len(names)} classes, input {size}x{size}, {len(anchors)} anchors", file=sys.stderr, flush=True)

    params = [p for m in (model.extras, model.loc, model.cls) for p in m.parameters()]
    # burn's AdamW defaults (epsilon 1e-5) so that only the framework differs.
    optimizer = torch.optim.AdamW(params, lr=args.lr, weight_decay=args.weight_decay, eps=1e-5)
    steps_per_epoch = math.ceil(len(train) / batch)
    total = steps_per_epoch * args.epochs
    warmup = min(args.warmup_steps, total // 10)
    cache = None
    metrics = open(os.path.join(args.out, "metrics.csv"), "w")
    metrics.write("epoch,loss,seconds,images_per_second\n")
    for epoch in range(args.epochs):
        started = time.perf_counter()
        if cache is None:
            # The frozen backbone's features of every training image, once plain and then augmented.
            model.features.eval()
            cache = []
            for v in range(args.cached_versions):
                s16, s32, targets = [], [], []
                for i in range(0, len(train), 16):
                    prepared = [prepare(*decode(s), size, v > 0, rng) for s in train[i:i + 16]]
                    with torch.inference_mode():
                        a, b = model.backbone(torch.from_numpy(np.stack([p[0] for p in prepared])))
                    s16.append(a)
                    s32.append(b)
                    targets += [(p[1], p[2]) for p in prepared]
                cache.append((torch.cat(s16), torch.cat(s32), targets))
                print(f"  cached backbone features, version {v + 1}/{args.cached_versions} "
                      f"({time.perf_counter() - started:.0f}s)", file=sys.stderr, flush=True)
        training_started = time.perf_counter()
        model.extras.train(), model.loc.train(), model.cls.train()
        order = rng.permutation(len(train))
        picks = [(int(rng.integers(len(cache))), int(i)) for i in order]
        loss_sum = 0.0
        for step_in_epoch, start in enumerate(range(0, len(picks), batch)):
            chunk = picks[start:start + batch]
            a = torch.stack([cache[v][0][i] for v, i in chunk])
            b = torch.stack([cache[v][1][i] for v, i in chunk])
            matched = [match(anchors, corners, *cache[v][2][i]) for v, i in chunk]
            labels = torch.stack([m[0] for m in matched])
            encodings = torch.stack([m[1] for m in matched])
            lr = learning_rate(epoch * steps_per_epoch + step_in_epoch, total, warmup, args.lr)
            for group in optimizer.param_groups:
                group["lr"] = lr
            loc, logits = model.heads(a, b)
            loss = multibox_loss(loc, logits, labels, encodings)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            if not math.isfinite(loss.item()):
                fail(f"the loss became {loss.item()} at epoch {epoch + 1}")
            loss_sum += loss.item() * len(chunk)
        train_secs = time.perf_counter() - training_started
        # Validation pass (the trainer's: decode, plain stretch, whole network, 8 images at a time).
        model.eval()
        with open(os.path.join(args.out, f"epoch-{epoch + 1}.jsonl"), "w") as f, torch.inference_mode():
            for i in range(0, len(val), 8):
                x = torch.from_numpy(np.stack([prepare(*decode(s), size, False, rng)[0] for s in val[i:i + 8]]))
                loc, logits = model.heads(*model.backbone(x))
                for j in range(len(x)):
                    f.write(log_line(i + j, detect(loc[j], logits[j], anchors), names) + "\n")
        secs = time.perf_counter() - started
        metrics.write(f"{epoch},{loss_sum / len(train):.5f},{secs:.1f},{len(train) / train_secs:.2f}\n")
        metrics.flush()
        print(f"epoch {epoch + 1}: train loss {loss_sum / len(train):.4f} ({secs:.0f}s, "
              f"{len(train) / train_secs:.1f} images/s)", file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()
