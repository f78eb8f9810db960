#!/usr/bin/env python3
"""Helpers of benchmarks/active_learning (standard library only).

review: ground truth plays the reviewer. A round's clip was captured twice: every frame with its ground truth
(TRUTH) and the frames a selection policy chose (SELECTED, with the model's boxes). The reviewer labels at most
BUDGET of the chosen frames, the most uncertain first (a frame's uncertainty: 1 for each box marked for review,
plus 1 - |2c - 1| for each box of confidence c), tops up to BUDGET with evenly spaced frames the policy did not
choose (a team labels a fixed number a round), and adds them, with their ground truth (the model's boxes are
dropped), to the labelled POOL as TAG-ID. Frames are matched by the <pts> every capture writes. Prints
"chosen used topped".

report: the CSV of all runs -> per policy and round the mean held-out mAP@0.5 over seeds (min..max), and an SVG
chart of it.
"""
import csv
import os
import re
import shutil
import sys
from collections import defaultdict


def pts_of(xml_path):
    with open(xml_path, encoding="utf-8") as f:
        m = re.search(r"<pts>(\d+)</pts>", f.read())
    return int(m.group(1)) if m else None


def uncertainty(xml_path):
    with open(xml_path, encoding="utf-8") as f:
        xml = f.read()
    score = 0.0
    for obj in re.findall(r"<object>(.*?)</object>", xml, re.S):
        if "<review>" in obj:
            score += 1.0
        else:
            m = re.search(r"<confidence>([0-9.eE+-]+)</confidence>", obj)
            if m:
                score += 1.0 - abs(2.0 * float(m.group(1)) - 1.0)
    return score


def samples(folder):
    """pts -> sample id of a captured folder (empty when the policy saved nothing)."""
    ann = os.path.join(folder, "Annotations")
    out = {}
    if os.path.isdir(ann):
        for name in sorted(os.listdir(ann)):
            if name.endswith(".xml"):
                pts = pts_of(os.path.join(ann, name))
                if pts is not None:
                    out[pts] = name[:-4]
    return out


def evenly(items, n):
    """n items spread evenly over the sorted list (all of them when there are no more than n)."""
    items = sorted(items)
    if len(items) <= n:
        return items
    return [items[(2 * i + 1) * len(items) // (2 * n)] for i in range(n)]


def review(truth, selected, budget, pool, tag):
    truth_ids = samples(truth)
    picked = samples(selected)
    chosen = [p for p in picked if p in truth_ids]
    score = lambda p: uncertainty(os.path.join(selected, "Annotations", picked[p] + ".xml"))
    used = sorted(sorted(chosen, key=lambda p: (-score(p), p))[:budget])
    rest = [p for p in truth_ids if p not in set(used)]
    topped = evenly(rest, budget - len(used))
    for sub in ("Annotations", "JPEGImages"):
        os.makedirs(os.path.join(pool, sub), exist_ok=True)
    shutil.copyfile(os.path.join(truth, "labels.txt"), os.path.join(pool, "labels.txt"))
    for pts in used + topped:
        sid = truth_ids[pts]
        new = f"{tag}-{sid}"
        shutil.copyfile(os.path.join(truth, "JPEGImages", sid + ".jpg"), os.path.join(pool, "JPEGImages", new + ".jpg"))
        with open(os.path.join(truth, "Annotations", sid + ".xml"), encoding="utf-8") as f:
            xml = f.read().replace(f"<filename>{sid}.jpg</filename>", f"<filename>{new}.jpg</filename>")
        xml = xml.replace("<segmented>0</segmented>", "<segmented>0</segmented>\n  <reviewed>1</reviewed>", 1)
        with open(os.path.join(pool, "Annotations", new + ".xml"), "w", encoding="utf-8") as f:
            f.write(xml)
    print(len(chosen), len(used), len(topped))


def report(csv_path, svg_path):
    runs = defaultdict(list)  # (policy, round) -> [map]
    labelled = {}
    with open(csv_path, newline="") as f:
        for row in csv.DictReader(f):
            key = (row["policy"], int(row["round"]))
            runs[key].append(float(row["map50"]))
            labelled[key] = int(row["labelled"])
    policies = sorted({p for p, _ in runs}, key=lambda p: (p != "every-nth", p))
    rounds = sorted({r for _, r in runs})
    print(f"{'policy':<18}" + "".join(f"{'round ' + str(r):>22}" for r in rounds))
    for p in policies:
        cells = []
        for r in rounds:
            v = runs.get((p, r))
            cells.append(f"{sum(v) / len(v):.3f} ({min(v):.3f}..{max(v):.3f})" if v else "-")
        print(f"{p:<18}" + "".join(f"{c:>22}" for c in cells))
    # The chart: mean mAP per round, a bar from the lowest to the highest seed.
    w, h, left, bottom, top, right = 640, 400, 60, 50, 20, 160
    values = [x for v in runs.values() for x in v]
    lo, hi = min(values + [0.0]), max(values + [0.1])
    lo, hi = max(0.0, lo - 0.05), min(1.0, hi + 0.05)
    sx = lambda r: left + (r - rounds[0]) * (w - left - right) / max(1, rounds[-1] - rounds[0])
    sy = lambda v: top + (hi - v) * (h - top - bottom) / (hi - lo)
    colours = ["#444444", "#d62728", "#1f77b4", "#2ca02c", "#9467bd"]
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="12">',
           f'<rect width="{w}" height="{h}" fill="white"/>',
           f'<line x1="{left}" y1="{h - bottom}" x2="{w - right}" y2="{h - bottom}" stroke="black"/>',
           f'<line x1="{left}" y1="{top}" x2="{left}" y2="{h - bottom}" stroke="black"/>',
           f'<text x="{(left + w - right) / 2}" y="{h - 12}" text-anchor="middle">round (labelled frames added each round)</text>',
           f'<text x="14" y="{(top + h - bottom) / 2}" transform="rotate(-90 14 {(top + h - bottom) / 2})" '
           f'text-anchor="middle">held-out mAP@0.5</text>']
    for r in rounds:
        out.append(f'<text x="{sx(r)}" y="{h - bottom + 16}" text-anchor="middle">{r}</text>')
    steps = 5
    for i in range(steps + 1):
        v = lo + (hi - lo) * i / steps
        out.append(f'<text x="{left - 6}" y="{sy(v) + 4}" text-anchor="end">{v:.2f}</text>')
        out.append(f'<line x1="{left}" y1="{sy(v)}" x2="{w - right}" y2="{sy(v)}" stroke="#eeeeee"/>')
    for i, p in enumerate(policies):
        c = colours[i % len(colours)]
        pts = [(r, runs[(p, r)]) for r in rounds if (p, r) in runs]
        path = " ".join(f"{sx(r):.1f},{sy(sum(v) / len(v)):.1f}" for r, v in pts)
        out.append(f'<polyline points="{path}" fill="none" stroke="{c}" stroke-width="2"/>')
        for r, v in pts:
            out.append(f'<line x1="{sx(r):.1f}" y1="{sy(min(v)):.1f}" x2="{sx(r):.1f}" y2="{sy(max(v)):.1f}" stroke="{c}"/>')
            out.append(f'<circle cx="{sx(r):.1f}" cy="{sy(sum(v) / len(v)):.1f}" r="3" fill="{c}"/>')
        y = top + 16 + 18 * i
        out.append(f'<line x1="{w - right + 12}" y1="{y - 4}" x2="{w - right + 32}" y2="{y - 4}" stroke="{c}" stroke-width="2"/>')
        out.append(f'<text x="{w - right + 38}" y="{y}">{p}</text>')
    out.append("</svg>")
    with open(svg_path, "w", encoding="utf-8") as f:
        f.write("\n".join(out) + "\n")
    print(f"chart: {svg_path}")


if __name__ == "__main__":
    if len(sys.argv) == 7 and sys.argv[1] == "review":
        review(sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5], sys.argv[6])
    elif len(sys.argv) == 4 and sys.argv[1] == "report":
        report(sys.argv[2], sys.argv[3])
    else:
        sys.exit("usage: active_learning.py review TRUTH SELECTED BUDGET POOL TAG | report RUNS.csv CHART.svg")
