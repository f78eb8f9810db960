#!/usr/bin/env python3
"""Builds a pytorch-ssd `mb2-ssd-lite` (jetson-inference's re-training format) in PyTorch and exports it to ONNX
as jetson-inference's `onnx_export.py` does: input `input_0` [1,3,300,300] holding (pixel - 127) / 128 in RGB,
outputs `scores` [1,3000,C] (softmax, background at 0) and `boxes` [1,3000,4] (x0,y0,x1,y1 normalised).

No pretrained pytorch-ssd file exists offline, so the layers follow pytorch-ssd's published layout (qfgaohao/
pytorch-ssd `vision/ssd/mobilenet_v2_ssd_lite.py`, `vision/nn/mobilenet_v2.py`, `config/mobilenetv1_ssd_config.py`)
written out here, with seeded random weights and BatchNorm statistics measured on random smooth images (so that
folding them is exercised and the outputs depend on the input):
`mobilenet-trainer import` must reproduce whatever the weights are. Needs torch and onnx:

    python3 tests/models/make_pytorch_ssd.py tests/models/mb2-ssd-lite-pytorch.onnx
"""
import itertools
import math
import sys

import torch
from torch import nn

CLASSES = 3  # background + 2
SIDE = 300
# pytorch-ssd's mobilenetv1_ssd_config (mb2-ssd-lite uses it): (map side, shrinkage, min size, max size)
SPECS = [(19, 16, 60, 105), (10, 32, 105, 150), (5, 64, 150, 195), (3, 100, 195, 240), (2, 150, 240, 285),
         (1, 300, 285, 330)]


def conv_bn_relu6(cin, cout, k, stride, groups=1):
    return [nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False), nn.BatchNorm2d(cout), nn.ReLU6()]


class Block(nn.Module):
    """MobileNetV2's inverted residual as pytorch-ssd writes it: hidden = round(inp * t), linear projection."""

    def __init__(self, inp, oup, stride, t):
        super().__init__()
        hidden = round(inp * t)
        layers = [] if t == 1 else conv_bn_relu6(inp, hidden, 1, 1)
        layers += conv_bn_relu6(hidden, hidden, 3, stride, groups=hidden)
        layers += [nn.Conv2d(hidden, oup, 1, 1, 0, bias=False), nn.BatchNorm2d(oup)]
        self.conv = nn.Sequential(*layers)
        self.residual = stride == 1 and inp == oup

    def forward(self, x):
        return x + self.conv(x) if self.residual else self.conv(x)


def separable(cin, cout):
    return nn.Sequential(nn.Conv2d(cin, cin, 3, 1, 1, groups=cin), nn.BatchNorm2d(cin), nn.ReLU6(),
                         nn.Conv2d(cin, cout, 1))


def priors():
    out = []
    for side, shrink, lo, hi in SPECS:
        step = shrink / SIDE
        for j, i in itertools.product(range(side), repeat=2):
            cx, cy = (i + 0.5) * step, (j + 0.5) * step
            s, big = lo / SIDE, math.sqrt(lo * hi) / SIDE
            out += [[cx, cy, s, s], [cx, cy, big, big]]
            for r in (2.0, 3.0):
                r = math.sqrt(r)
                out += [[cx, cy, s * r, s / r], [cx, cy, s / r, s * r]]
    return torch.tensor(out).clamp(0.0, 1.0)


class MobileNetV2SsdLite(nn.Module):
    def __init__(self, classes=CLASSES):
        super().__init__()
        self.classes = classes
        features = [nn.Sequential(*conv_bn_relu6(3, 32, 3, 2))]
        cin = 32
        for t, c, n, s in [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
                           (6, 160, 3, 2), (6, 320, 1, 1)]:
            for i in range(n):
                features.append(Block(cin, c, s if i == 0 else 1, t))
                cin = c
        features.append(nn.Sequential(*conv_bn_relu6(cin, 1280, 1, 1)))
        self.base_net = nn.Sequential(*features)
        self.extras = nn.ModuleList([Block(1280, 512, 2, 0.2), Block(512, 256, 2, 0.25), Block(256, 256, 2, 0.5),
                                     Block(256, 64, 2, 0.25)])
        ins = [576, 1280, 512, 256, 256]
        self.classification_headers = nn.ModuleList(
            [separable(c, 6 * classes) for c in ins] + [nn.Conv2d(64, 6 * classes, 1)])
        self.regression_headers = nn.ModuleList([separable(c, 6 * 4) for c in ins] + [nn.Conv2d(64, 6 * 4, 1)])
        self.register_buffer("priors", priors())

    def header(self, i, x):
        n = x.shape[0]
        conf = self.classification_headers[i](x).permute(0, 2, 3, 1).reshape(n, -1, self.classes)
        loc = self.regression_headers[i](x).permute(0, 2, 3, 1).reshape(n, -1, 4)
        return conf, loc

    def heads(self, x):
        """Each map's (class logits, location offsets)."""
        heads = []
        for layer in self.base_net[:14]:
            x = layer(x)
        # The first map is block 14's expansion (its first 1x1 conv, BN and ReLU6): pytorch-ssd's GraphPath(14,'conv',3).
        expand, rest = self.base_net[14].conv[:3], self.base_net[14].conv[3:]
        y = expand(x)
        x = rest(y)
        heads.append(self.header(0, y))
        for layer in self.base_net[15:]:
            x = layer(x)
        heads.append(self.header(1, x))
        for i, extra in enumerate(self.extras):
            x = extra(x)
            heads.append(self.header(i + 2, x))
        return heads

    def raw(self, x):
        """Class logits [N,3000,C] and location offsets [N,3000,4] (what training's loss reads)."""
        heads = self.heads(x)
        return torch.cat([h[0] for h in heads], 1), torch.cat([h[1] for h in heads], 1)

    def forward(self, x):
        heads = self.heads(x)
        conf = torch.softmax(torch.cat([h[0] for h in heads], 1), dim=2)
        loc = torch.cat([h[1] for h in heads], 1)
        centers = loc[..., :2] * 0.1 * self.priors[:, 2:] + self.priors[:, :2]
        sizes = torch.exp(loc[..., 2:] * 0.2) * self.priors[:, 2:]
        boxes = torch.cat([centers - sizes / 2, centers + sizes / 2], 2)
        return conf, boxes


def main():
    torch.manual_seed(1)
    net = MobileNetV2SsdLite()
    for m in net.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.xavier_uniform_(m.weight)  # pytorch-ssd's own initialisation (`SSD.init`)
            if m.bias is not None:
                nn.init.normal_(m.bias, 0.0, 0.1)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.uniform_(m.weight, 0.5, 1.5)
            nn.init.normal_(m.bias, 0.0, 0.1)
            m.momentum = None  # running statistics: the plain average over the calibration batches
    # BatchNorm statistics from images (smooth random patterns), as training leaves them: with made-up statistics
    # the activations saturate and the outputs stop depending on the input.
    net.train()
    with torch.no_grad():
        for _ in range(8):
            coarse = torch.rand(4, 3, 10, 10) * 255
            pixels = nn.functional.interpolate(coarse, size=(SIDE, SIDE), mode="bilinear", align_corners=False)
            net((pixels - 127) / 128)
    net.eval()
    x = torch.randn(1, 3, SIDE, SIDE)
    torch.onnx.export(net, x, sys.argv[1], input_names=["input_0"], output_names=["scores", "boxes"],
                      opset_version=11, dynamo=False)
    print(f"wrote {sys.argv[1]}")


if __name__ == "__main__":
    main()
