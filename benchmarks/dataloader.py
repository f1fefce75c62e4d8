"""How fast the Dataset feeds training: samples/s through a DataLoader with 2 workers.

    python benchmarks/dataloader.py                          # /work/data_cache/grid, train split
    python benchmarks/dataloader.py --root DIR --split train --workers 2 --batches 30

Measures whole 75-frame clips and 16-frame sub-sequences (with mirroring on, as in training),
after one warm-up batch per loader (worker start-up not counted), and the wall and CPU time of
one item read in-process (on a busy machine the wall time grows, the CPU time stays).
"""

import argparse
import os
import time

import numpy as np
import torch

from speech_anim.data import TalkingFaceDataset, collate_clips


def samples_per_second(dataset, workers, batch_size, batches):
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=batch_size, shuffle=True, num_workers=workers, collate_fn=collate_clips,
        persistent_workers=workers > 0, prefetch_factor=4 if workers else None,
    )  # fmt: skip
    iterator = iter(loader)
    next(iterator)  # warm-up: starts the workers
    start, count = time.perf_counter(), 0
    for _ in range(batches):
        try:
            batch = next(iterator)
        except StopIteration:
            iterator = iter(loader)
            batch = next(iterator)
        count += len(batch["id"])
    return count / (time.perf_counter() - start)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default="/work/data_cache/grid")
    parser.add_argument("--split", default="train")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batches", type=int, default=30)
    args = parser.parse_args()
    torch.set_num_threads(1)
    with open("/proc/loadavg") as f:
        print(f"load average: {f.read().split()[:3]} on {len(os.sched_getaffinity(0))} cores")
    for frames, batch_size in ((None, 8), (16, 32)):
        dataset = TalkingFaceDataset(args.root, args.split, frames=frames, mirror=True)
        # One process, no loader: cost of one item.
        t0, cpu0 = time.perf_counter(), time.process_time()
        for i in np.random.default_rng(0).integers(0, len(dataset), 20):
            dataset[int(i)]
        item_ms, item_cpu_ms = 1e3 * (time.perf_counter() - t0) / 20, 1e3 * (time.process_time() - cpu0) / 20
        rate = samples_per_second(dataset, args.workers, batch_size, args.batches)
        label = "75-frame clips" if frames is None else f"{frames}-frame windows"
        print(f"{label:18s} ({len(dataset)} clips, batch {batch_size}): {rate:7.1f} samples/s with {args.workers} workers; "
              f"one item in-process {item_ms:.1f} ms wall, {item_cpu_ms:.1f} ms CPU")  # fmt: skip


if __name__ == "__main__":
    main()
