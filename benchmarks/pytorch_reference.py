"""PyTorch reference for `mobilenet-trainer`'s training speed: the same MobileNetV2-SSDLite (torchvision's
layout, the same ImageNet weights), the same anchors count, the same MultiBox loss with 3:1 hard negative
mining and AdamW, timed per recipe on 2 threads like the Rust bench (trainer/benches/train_speed.rs).

    python3 benchmarks/pytorch_reference.py [--input-size 160] [--batch 16] [--weights mobilenet_v2-b0353104.pth]

Prints one line per recipe: `<recipe> <images/s> images/s`. benchmarks/train_speed runs both and the ratios.
"""
import argparse
import math
import statistics
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


def make_divisible(v, divisor=8):
    new = max(divisor, int(v + divisor / 2) // divisor * divisor)
    return new + divisor if new < 0.9 * v else new


def conv_bn(cin, cout, k, stride=1, groups=1, act=True):
    layers = [nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False), nn.BatchNorm2d(cout)]
    if act:
        layers.append(nn.ReLU6(inplace=True))
    return nn.Sequential(*layers)


class InvertedResidual(nn.Module):
    def __init__(self, cin, cout, stride, t):
        super().__init__()
        hidden = cin * t
        layers = [] if t == 1 else [conv_bn(cin, hidden, 1)]
        layers += [conv_bn(hidden, hidden, 3, stride, hidden), nn.Conv2d(hidden, cout, 1, bias=False), nn.BatchNorm2d(cout)]
        self.conv = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout
        self.expands = t != 1

    def forward(self, x, want_expansion=False):
        if want_expansion and self.expands:
            e = self.conv[0](x)
            y = self.conv[1:](e)
            return (x + y if self.residual else y), e
        y = self.conv(x)
        return (x + y if self.residual else y), None


BLOCKS = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)]
PER_LOCATION = [3, 6, 6, 6, 6, 6]


class SsdLite(nn.Module):
    def __init__(self, num_classes):
        super().__init__()
        cin = 32
        feats = [conv_bn(3, cin, 3, 2)]
        for t, c, n, s in BLOCKS:
            for i in range(n):
                feats.append(InvertedResidual(cin, c, s if i == 0 else 1, t))
                cin = c
        feats.append(conv_bn(cin, 1280, 1))
        self.features = nn.Sequential(*feats)  # torchvision's names: the ImageNet weights load as they are
        channels = [96 * 6, 1280, 512, 256, 256, 64]
        self.extras = nn.ModuleList(
            nn.Sequential(conv_bn(channels[i - 1], channels[i] // 2, 1),
                          conv_bn(channels[i] // 2, channels[i] // 2, 3, 2, channels[i] // 2),
                          conv_bn(channels[i] // 2, channels[i], 1))
            for i in range(2, 6))
        self.num_classes = num_classes

        self.loc = nn.ModuleList(nn.Sequential(conv_bn(c, c, 3, 1, c), nn.Conv2d(c, m * 4, 1))
                                 for c, m in zip(channels, PER_LOCATION))
        self.cls = nn.ModuleList(nn.Sequential(conv_bn(c, c, 3, 1, c), nn.Conv2d(c, m * num_classes, 1))
                                 for c, m in zip(channels, PER_LOCATION))

    def backbone(self, x):
        h = self.features[0](x)
        s16 = None
        for i in range(1, 18):
            h, e = self.features[i](h, want_expansion=(i == 14))
            if e is not None:
                s16 = e
        return s16, self.features[18](h)

    def heads(self, s16, s32):
        maps = [s16, s32]
        f = s32
        for extra in self.extras:
            f = extra(f)
            maps.append(f)
        b = s16.shape[0]
        loc = torch.cat([h(m).permute(0, 2, 3, 1).reshape(b, -1, 4) for h, m in zip(self.loc, maps)], 1)
        cls = torch.cat([h(m).permute(0, 2, 3, 1).reshape(b, -1, self.num_classes) for h, m in zip(self.cls, maps)], 1)
        return loc, cls


def multibox_loss(loc, logits, labels, encodings):
    pos = labels > 0
    n_pos = pos.sum().clamp(min=1)
    loc_loss = F.smooth_l1_loss(loc[pos], encodings[pos], reduction="sum")
    ce = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1), reduction="none").reshape(labels.shape)
    with torch.no_grad():
        neg_ce = ce.clone()
        neg_ce[pos] = -1.0
        rank = neg_ce.argsort(1, descending=True).argsort(1)
        # 3 negatives per positive, and 3 in an image without objects (as trainer/src/loss.rs).
        neg = (rank < 3 * pos.sum(1, keepdim=True).clamp(min=1)) & ~pos
    cls_loss = ce[pos | neg].sum()
    return (loc_loss + cls_loss) / n_pos


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--input-size", type=int, default=160)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--weights", default=None)
    args = ap.parse_args()
    torch.set_num_threads(2)
    torch.manual_seed(0)
    size, batch = args.input_size, args.batch
    print(f"PyTorch {torch.__version__} CPU, 2 threads, MobileNetV2-SSDLite width 1.0, input {size}x{size}, "
          f"batch {batch}, AdamW")
    model = SsdLite(6).eval()
    images = torch.rand(batch, 3, size, size)
    times = []
    for step in range(5):
        started = time.perf_counter()
        with torch.no_grad():
            model.backbone(images)
        if step > 0:
            times.append(time.perf_counter() - started)
    median = statistics.median(times)
    print(f"{'features':<8} {batch / median:>8.2f} images/s  ({median:.3f} s/batch)")
    for recipe in ["full", "frozen", "cached"]:
        model = SsdLite(6)
        if args.weights:
            state = torch.load(args.weights, map_location="cpu")
            model.load_state_dict({k: v for k, v in state.items() if k.startswith("features.")}, strict=False)
        images = torch.rand(batch, 3, size, size)
        with torch.no_grad():
            model.eval()
            s16, s32 = model.backbone(images)
        model.train()
        anchors = model.heads(s16, s32)[0].shape[1]
        labels = torch.zeros(batch, anchors, dtype=torch.long)
        labels[:, ::97] = torch.arange(1, 6).repeat(anchors // 97 + 1)[: labels[:, ::97].shape[1]]
        encodings = torch.randn(batch, anchors, 4) * 0.5
        params = model.parameters() if recipe == "full" else list(model.extras.parameters()) + \
            list(model.loc.parameters()) + list(model.cls.parameters())
        opt = torch.optim.AdamW(params, lr=1e-3, weight_decay=1e-4)
        steps = 3 if recipe == "full" else 6
        times = []
        for step in range(steps + 1):
            started = time.perf_counter()
            if recipe == "full":
                loc, cls = model.heads(*model.backbone(images))
            elif recipe == "frozen":
                with torch.no_grad():
                    model.features.eval()
                    a, b = model.backbone(images)
                loc, cls = model.heads(a, b)
            else:
                loc, cls = model.heads(s16, s32)
            loss = multibox_loss(loc, cls, labels, encodings)
            opt.zero_grad()
            loss.backward()
            opt.step()
            assert math.isfinite(loss.item())
            if step > 0:
                times.append(time.perf_counter() - started)
        median = statistics.median(times)
        print(f"{recipe:<8} {batch / median:>8.2f} images/s  ({median:.3f} s/step)")


if __name__ == "__main__":
    main()
