"""The training race's report (benchmarks/training_race): every run's validation mAP@0.5 against elapsed wall time
in one CSV and one PNG, and the ratios of their times to mAP 0.7 and to the best mAP all runs reach, against PyTorch.

Elapsed time is the sum of the epochs' seconds (feature caching in the first epoch, training, the validation pass):
what both trainers log per epoch. Start-up before the first epoch (reading the data set, loading weights) is left
out of the curves; the whole processes' wall times are printed beside them.

    race_report.py --run LABEL METRICS_CSV MAP_CSV|- WALL_SECONDS [--run ...] --reference LABEL --csv F --png F

MAP_CSV `-`: the mAP is metrics.csv's `val_map50` column (mobilenet-trainer); else `epoch,map` rows (scored logs).
"""
import argparse
import csv
import sys


def read_run(metrics, maps):
    rows = list(csv.DictReader(open(metrics)))
    if maps == "-":
        by_epoch = {int(r["epoch"]): float(r["val_map50"]) for r in rows}
    else:
        by_epoch = {int(e): float(m) for e, m in csv.reader(open(maps))}
    if len(by_epoch) != len(rows):
        sys.exit(f"{maps}: {len(by_epoch)} scores for {len(rows)} epochs in {metrics}")
    elapsed, points = 0.0, []
    for r in rows:
        elapsed += float(r["seconds"])
        points.append((int(r["epoch"]) + 1, elapsed, by_epoch[int(r["epoch"])]))
    return points


def time_to(points, target):
    return next((t for _, t, m in points if m >= target - 1e-9), None)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--run", nargs=4, action="append", metavar=("LABEL", "METRICS", "MAPS", "WALL"), required=True)
    ap.add_argument("--reference", default="PyTorch")
    ap.add_argument("--target", type=float, default=0.7)
    ap.add_argument("--csv", required=True)
    ap.add_argument("--png", required=True)
    args = ap.parse_args()
    runs = {label: (read_run(metrics, maps), float(wall)) for label, metrics, maps, wall in args.run}
    if args.reference not in runs:
        sys.exit(f"no run labelled {args.reference}")
    with open(args.csv, "w") as f:
        f.write("run,epoch,elapsed_seconds,map50\n")
        for label, (points, _) in runs.items():
            for e, t, m in points:
                f.write(f"{label},{e},{t:.1f},{m:.4f}\n")

    print(f"{'run':<28} " + " ".join(f"{'ep ' + str(e):>13}" for e, *_ in next(iter(runs.values()))[0]))
    for label, (points, _) in runs.items():
        print(f"{label:<28} " + " ".join(f"{t:>6.0f}s {m:.3f}" for _, t, m in points))
    best = {label: max(m for *_, m in points) for label, (points, _) in runs.items()}
    common = min(best.values())
    ref_points, ref_wall = runs[args.reference]
    print("best validation mAP@0.5: " + ", ".join(f"{label} {m:.3f}" for label, m in best.items()))
    for label, (points, wall) in runs.items():
        if label == args.reference:
            continue
        print(f"{label} / {args.reference}:")
        print(f"  whole runs (start-up included): {wall:.0f} s / {ref_wall:.0f} s = {wall / ref_wall:.2f}")
        for name, target in ((f"mAP {args.target}", args.target), (f"the best all reach, {common:.3f}", common)):
            a, b = time_to(points, target), time_to(ref_points, target)
            if a is None or b is None:
                print(f"  time to {name}: not reached by both ({a}, {b})")
            else:
                print(f"  time to {name}: {a:.0f} s / {b:.0f} s = {a / b:.2f}")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=120)
    for label, (points, _) in runs.items():
        ax.plot([0] + [t / 60 for _, t, _ in points], [0] + [m for *_, m in points], marker="o", label=label)
    ax.axhline(args.target, color="grey", linestyle=":", linewidth=1)
    ax.set_xlabel("wall time (minutes, 2 CPU threads)")
    ax.set_ylabel("validation mAP@0.5")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    ax.set_title("Same recipe, same data: validation mAP against training time")
    fig.tight_layout()
    fig.savefig(args.png)
    print(f"chart: {args.png}")


if __name__ == "__main__":
    main()
