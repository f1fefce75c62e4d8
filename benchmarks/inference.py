"""Generator inference speed: frames per second for one 3 s clip in one pass and streamed in chunks.

    python benchmarks/inference.py                      # all cores, paper size + 0.5 + 0.25
    python benchmarks/inference.py --threads 2 --widths 1.0 0.25 --repeats 5

Timings include encoding the still (once per clip) and sampling the noise; weights are random (speed
does not depend on them). Each number is the median over `--repeats` runs after one warm-up run.
"CPU ms/frame" is process CPU time (all threads): on a busy machine, wall-clock frames/s drops while it
stays put, and with several threads a CPU time far above the wall time means threads spin-waiting.
"""

import argparse
import os
import statistics
import time

import torch

from speech_anim.face import canonical_landmarks
from speech_anim.models.generator import Generator, GeneratorConfig


def _clip_seconds(model, still, audio, chunk, sync, landmarks=None):
    """(wall, CPU) seconds to generate the whole clip: one pass (chunk=None) or `chunk` frames at a time."""
    generator = torch.Generator(device=still.device).manual_seed(0)
    start, cpu_start = time.perf_counter(), time.process_time()
    if chunk is None:
        model(still, audio, generator=generator, still_landmarks=landmarks)
    else:
        state = None
        for t in range(0, audio.shape[1], chunk):
            _, state = model(still, audio[:, t:t + chunk], state=state, return_state=True, generator=generator,
                             still_landmarks=landmarks)
    sync()
    return time.perf_counter() - start, time.process_time() - cpu_start


def benchmark(device, widths, gru_layers, frames, chunk, repeats, shipped=False):
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    rows = []
    for width in widths:
        layers = gru_layers if width == 1.0 else 1
        # shipped: the default model's kind, blend output, the eye input (two decoder passes, eye process)
        # and the mouth motion (its audio model and the still's warp, every frame)
        model = Generator(GeneratorConfig(width=width, audio_gru_layers=layers, output="blend" if shipped else "frame",
                                          eye_input=shipped, mouth_motion=shipped, mouth_cepstra=13 if shipped else 0)).to(device).eval()
        landmarks = torch.from_numpy(canonical_landmarks()).float()[None].to(device) if shipped else None
        params = sum(p.numel() for p in model.parameters()) / 1e6
        still = torch.rand(1, 3, 128, 96, device=device) * 2 - 1
        audio = torch.randn(1, frames, 3200, device=device) * 0.1
        with torch.inference_mode():
            for mode, size in (("one pass", None), (f"chunks of {chunk}", chunk)):
                _clip_seconds(model, still, audio, size, sync, landmarks)  # warm-up (allocator, kernels)
                runs = [_clip_seconds(model, still, audio, size, sync, landmarks) for _ in range(repeats)]
                wall, cpu = statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs)
                rows.append((device.type, width, layers, params, mode, frames / wall, 1000 * wall / frames,
                             1000 * cpu / frames))
                print(_format(rows[-1]), flush=True)
    return rows


def _format(row):
    device, width, layers, params, mode, fps, ms, cpu_ms = row
    return f"{device:<6} {width:>5.3g} {layers:>4} {params:>8.1f} {mode:<13} {fps:>8.1f} {ms:>9.2f} {cpu_ms:>13.2f}"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="torch CPU threads (default: all cores)")
    parser.add_argument("--widths", type=float, nargs="+", default=[1.0, 0.5, 0.25])
    parser.add_argument("--gru-layers", type=int, default=2, help="audio GRU layers at width 1 (2 = authors' size)")
    parser.add_argument("--frames", type=int, default=75, help="clip length (75 = 3 s at 25 fps)")
    parser.add_argument("--chunk", type=int, default=5, help="frames per streaming chunk")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-cuda", action="store_true")
    parser.add_argument("--shipped", action="store_true", help="generators of the shipped kind (blend output, eye input)")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} CPU threads, {args.frames} frames per clip, "
          f"median of {args.repeats}")
    print(f"{'device':<6} {'width':>5} {'gru':>4} {'params M':>8} {'mode':<13} {'frames/s':>8} {'ms/frame':>9} {'CPU ms/frame':>13}")
    devices = [torch.device("cpu")]
    if torch.cuda.is_available() and not args.no_cuda:
        devices.append(torch.device("cuda"))
    for device in devices:
        benchmark(device, args.widths, args.gru_layers, args.frames, args.chunk, args.repeats, args.shipped)


if __name__ == "__main__":
    main()
