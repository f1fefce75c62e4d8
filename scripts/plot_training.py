"""Plot a training run's metrics.csv (written by train/train.py) as one figure of loss curves.

    python scripts/plot_training.py runs/cpu-small/metrics.csv -o docs/train_cpu_small.png

Panels: the generator's adversarial terms, the lower-half L1 (Eq. 6), the discriminators' losses,
their accuracies, the validation metrics and the throughput. Training curves are drawn raw (faint)
and as a moving average over `--smooth` logged points.
"""

import argparse
import csv
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

PANELS = (
    ("generator: adversarial terms", ("loss/G/adv_img", "loss/G/adv_seq", "loss/G/adv_sync")),
    ("generator: lower-half L1 (Eq. 6)", ("loss/G/l1_lower", "val/l1_lower")),
    ("discriminator losses (Eq. 2-4)", ("loss/D/img", "loss/D/seq", "loss/D/sync")),
    ("discriminator accuracies", ("acc/D/img_real", "acc/D/img_fake", "acc/D/seq_real", "acc/D/seq_fake",
                                  "acc/D/sync_in", "acc/D/sync_out", "acc/D/sync_fake")),
    ("validation: D_sync on generated clips", ("val/sync_rank_fake", "val/sync_fake_in", "val/sync_rank_real")),
    ("throughput", ("perf/samples_per_s",)),
)


def read_metrics(path: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """name -> (steps, values) from the long-format CSV (step, epoch, time, name, value)."""
    series = defaultdict(list)
    try:
        with open(path, newline="") as file:
            for row in csv.DictReader(file):
                series[row["name"]].append((int(row["step"]), float(row["value"])))
    except FileNotFoundError:
        sys.exit(f"plot_training: error: {path} not found: pass the metrics.csv of a run folder (runs/<name>/metrics.csv)")
    except (KeyError, ValueError):
        sys.exit(f"plot_training: error: {path} is not a train/train.py metrics.csv (step, epoch, time, name, value)")
    if not series:
        sys.exit(f"plot_training: error: {path} holds no rows yet: let the run log a few steps first")
    return {name: tuple(np.array(column) for column in zip(*sorted(points))) for name, points in series.items()}


def moving_average(values: np.ndarray, window: int) -> np.ndarray:
    """Trailing mean over the last `window` points (fewer at the start, so the curve keeps its length)."""
    sums = np.concatenate([[0.0], np.cumsum(values)])
    ends = np.arange(1, len(values) + 1)
    starts = np.maximum(ends - max(window, 1), 0)
    return (sums[ends] - sums[starts]) / (ends - starts)


def plot(series: dict, out: Path, smooth: int, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(2, 3, figsize=(15, 8), constrained_layout=True)
    for ax, (panel_title, names) in zip(axes.flat, PANELS):
        for name in names:
            if name not in series:
                continue
            steps, values = series[name]
            if name.startswith("val/"):
                ax.plot(steps, values, "o-", markersize=3, label=name)
            else:
                line = ax.plot(steps, moving_average(values, smooth), label=name)[0]
                ax.plot(steps, values, color=line.get_color(), alpha=0.2, linewidth=0.8)
        ax.set_title(panel_title)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=7)
    last = max(int(steps[-1]) for steps, _ in series.values())
    figure.suptitle(f"{title} ({last} steps)")
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, dpi=100)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("metrics", type=Path, help="metrics.csv of a run (runs/<name>/metrics.csv)")
    parser.add_argument("-o", "--out", type=Path, default=None, help="PNG to write (default: beside metrics.csv)")
    parser.add_argument("--smooth", type=int, default=10, help="moving-average window in logged points")
    parser.add_argument("--title", default=None, help="figure title (default: the run folder's name)")
    args = parser.parse_args(argv)
    out = args.out or args.metrics.with_name("training.png")
    plot(read_metrics(args.metrics), out, args.smooth, args.title or args.metrics.parent.name)
    print(out)


if __name__ == "__main__":
    main()
