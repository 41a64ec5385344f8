"""CPU cost of the GPU sampler at a 1 s interval, as a percentage of one core.

Three measurements in one run, all with process CPU time (every thread of this process):
  1. idle baseline: the process waits `--seconds` with no sampler;
  2. sampling: the same wait with a GpuSampler running at `--interval`;
     cost = (sampling CPU - baseline CPU) / wall seconds;
  3. per sample: `--tight` samples back to back; cost at the interval = CPU per sample / interval.
Goal: under 1% of one core. Needs no Streamlit (runs on the GPU machine too).

    PYTHONPATH=. .venv/bin/python bench/gpu_sampler_cpu.py [--seconds 30] [--interval 1]
"""

from __future__ import annotations

import argparse
import os
import platform
import threading
import time

import psutil

from backend.gpu import GpuSampler

GOAL_PERCENT = 1.0


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def measure(seconds: float, sampler: GpuSampler | None) -> tuple[float, float, float]:
    """(wall s, process_time CPU s, psutil CPU s) over `seconds` of waiting."""
    proc = psutil.Process(os.getpid())
    done = threading.Event()
    if sampler is not None:
        sampler.start()
    t0, c0, p0 = time.monotonic(), time.process_time(), sum(proc.cpu_times()[:2])
    done.wait(seconds)  # the main thread sleeps; only the sampler thread works
    t1, c1, p1 = time.monotonic(), time.process_time(), sum(proc.cpu_times()[:2])
    if sampler is not None:
        sampler.stop()
    return t1 - t0, c1 - c0, p1 - p0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=30.0, help="length of phases 1 and 2")
    parser.add_argument("--interval", type=float, default=1.0, help="sampling interval, s")
    parser.add_argument("--tight", type=int, default=300, help="back-to-back samples, phase 3")
    args = parser.parse_args()

    sampler = GpuSampler(interval_s=args.interval)
    status = sampler._nvml.open()
    gpus = len(sampler._nvml.read()[1]) if status.available else 0
    print(f"machine: {cpu_model()}, {psutil.cpu_count()} logical cores, "
          f"{psutil.virtual_memory().total / 2**30:.1f} GiB RAM, {platform.platform()}")
    print(f"python {platform.python_version()}, psutil {psutil.__version__}")
    print(f"NVML: {status.message} | GPUs: {gpus}"
          + (f", driver {status.driver_version}" if status.available else ""))
    print(f"interval {args.interval:g} s, phases of {args.seconds:g} s, {args.tight} tight samples")

    wall_a, cpu_a, ps_a = measure(args.seconds, None)
    wall_b, cpu_b, ps_b = measure(args.seconds, sampler)
    samples_b = sampler.sample_count

    # stop() closed NVML, and read() only reopens it `retry_s` (60 s) after the last try: reopen
    # it now, outside the timing, so that the tight samples read the GPUs as phase 2 did.
    sampler._nvml.open()
    before = time.process_time()
    for _ in range(args.tight):
        sampler.sample_once()
    per_sample = (time.process_time() - before) / args.tight

    base_pct = 100 * cpu_a / wall_a
    run_pct = 100 * cpu_b / wall_b
    over_pct = run_pct - base_pct
    tight_pct = 100 * per_sample / args.interval
    print()
    print("| measurement | CPU s | wall s | % of one core |")
    print("|---|---:|---:|---:|")
    print(f"| 1. idle baseline (no sampler) | {cpu_a:.4f} | {wall_a:.1f} | {base_pct:.3f} |")
    print(f"| 2. sampler running ({samples_b} samples) | {cpu_b:.4f} | {wall_b:.1f} "
          f"| {run_pct:.3f} |")
    print(f"| 2 - 1: sampler cost | {cpu_b - cpu_a:.4f} | | **{over_pct:.3f}** |")
    print(f"| 3. per sample, back to back: {per_sample * 1e3:.3f} ms CPU; at 1/{args.interval:g}"
          f" s | | | **{tight_pct:.3f}** |")
    print(f"\n(psutil cross-check: baseline {100 * ps_a / wall_a:.3f}%, "
          f"sampling {100 * ps_b / wall_b:.3f}%; psutil counts in 10 ms ticks)")
    worst = max(over_pct, tight_pct)
    verdict = "PASS" if worst < GOAL_PERCENT else "FAIL"
    print(f"goal < {GOAL_PERCENT:g}% of one core: {verdict} (worst of 2-1 and 3: {worst:.3f}%)")


if __name__ == "__main__":
    main()
