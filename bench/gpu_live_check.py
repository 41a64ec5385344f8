"""Live check of the GPU monitor on a real GPU machine (needs torch with CUDA, nvidia-ml-py,
psutil; no Streamlit): the sampler runs at 1 s while a child process loads cuda:0 with matmuls
for about 10 s; every sample is printed, then the checks:

  1. GPU utilization during the load rises above the idle reading (by more than 10 points);
  2. GPU memory used rises while the load holds its tensors;
  3. the load process is listed on that GPU and marked as this app's (a child), as cuda:0.

    PYTHONPATH=. python bench/gpu_live_check.py [--load-seconds 10] [--idle-samples 3]

Exit status: 0 all checks pass, 1 check 1 or 2 failed, 3 only check 3 failed, 2 no GPU here.
"""

from __future__ import annotations

import argparse
import os
import queue
import subprocess
import sys
import threading
import time

N = 8192  # matmul size: 2*N^3 = 1.1 TFLOP a product


def child_load(seconds: float) -> None:
    """The GPU load (runs in the child): fp16 matmuls on cuda:0 for `seconds`."""
    import torch

    dev = torch.device("cuda:0")
    a = torch.randn(N, N, device=dev, dtype=torch.float16)
    b = torch.randn(N, N, device=dev, dtype=torch.float16)
    torch.cuda.synchronize()
    print(f"LOAD_READY {torch.cuda.get_device_name(0)}", flush=True)
    start, count = time.monotonic(), 0
    while time.monotonic() - start < seconds:
        for _ in range(10):
            a @ b
        torch.cuda.synchronize()
        count += 10
    took = time.monotonic() - start
    print(f"LOAD_DONE {count} matmuls in {took:.1f} s, {2 * N**3 * count / took / 1e12:.0f} "
          "TFLOP/s", flush=True)


def fmt(value, spec: str = "", none: str = "N/A") -> str:
    return none if value is None else format(value, spec)


def gpu_row(phase: str, t: float, gpu, mine: bool) -> str:
    mem = None if gpu.memory_used is None else gpu.memory_used / 2**20
    return (f"{t:6.1f} {phase:6} {fmt(gpu.util_gpu, '3d'):>4} {fmt(gpu.util_memory, '3d'):>4} "
            f"{fmt(mem, '8.0f'):>8} {fmt(gpu.power_w, '6.1f'):>6} "
            f"{fmt(gpu.temperature_c, '3d'):>4} {fmt(gpu.sm_clock_mhz, '5d'):>5} "
            f"{fmt(gpu.pstate, 'd'):>3} {'yes' if mine else '-':>5}")


def main() -> int:
    parser = argparse.ArgumentParser(description="GPU monitor live check")
    parser.add_argument("--load-seconds", type=float, default=10.0)
    parser.add_argument("--idle-samples", type=int, default=3)
    parser.add_argument("--child-load", type=float, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child_load is not None:
        child_load(args.child_load)
        return 0

    from backend.gpu import GpuSampler

    try:
        import torch
    except ImportError as exc:
        print(f"NO GPU CHECK: torch is not installed ({exc}).")
        return 2
    if not torch.cuda.is_available():
        print(f"NO GPU CHECK: torch {torch.__version__} sees no CUDA device "
              f"(torch.cuda.is_available() is False).")
        return 2

    sampler = GpuSampler(interval_s=1.0, history_len=600)
    sampler.start()
    try:
        return run_check(sampler, args)
    finally:
        sampler.stop()


def wait_for_sample(sampler, after_seq: int, timeout: float = 5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        snap = sampler.latest()
        if snap is not None and snap.seq > after_seq:
            return snap
        time.sleep(0.05)
    raise TimeoutError(f"the sampler produced no sample in {timeout:g} s "
                       f"(last error: {sampler.last_error})")


def run_check(sampler, args) -> int:
    snap = sampler.latest()
    status = snap.status
    if not status.available or not snap.gpus:
        print(f"NO GPU CHECK: {status.message}")
        return 2
    print(f"NVML ok: driver {status.driver_version}, CUDA {status.cuda_driver_version}, "
          f"NVML {status.nvml_version}; CUDA_VISIBLE_DEVICES="
          f"{os.environ.get('CUDA_VISIBLE_DEVICES', '(unset)')}")
    for gpu in snap.gpus:
        na = [f for f in ("util_gpu", "util_memory", "memory_used", "temperature_c", "power_w",
                          "power_limit_w", "sm_clock_mhz", "memory_clock_mhz", "fan_percent",
                          "pstate") if getattr(gpu, f) is None]
        print(f"  GPU {gpu.index}: {gpu.name} {gpu.uuid} cuda:{fmt(gpu.cuda_index, 'd', '-')} "
              f"mem total {fmt(gpu.memory_total and gpu.memory_total / 2**30, '.1f')} GiB, "
              f"power limit {fmt(gpu.power_limit_w, '.0f')} W; N/A fields: {na or 'none'}")
    target = next((g.index for g in snap.gpus if g.cuda_index == 0), None)
    if target is None:
        print("NO GPU CHECK: no NVML GPU maps to cuda:0 under CUDA_VISIBLE_DEVICES")
        return 2
    print(f"load goes to cuda:0 = NVML GPU {target}\n")
    print("     t phase  util  mem   mem MiB  power temp    SM  P  load")

    t0 = time.monotonic()
    rows: list[tuple[str, object, object]] = []  # (phase, gpu reading, child process reading)
    seq = snap.seq
    for _ in range(args.idle_samples):
        snap = wait_for_sample(sampler, seq)
        seq = snap.seq
        rows.append(("idle", snap.gpus[target], None))
        print(gpu_row("idle", time.monotonic() - t0, snap.gpus[target], False))

    child = subprocess.Popen(
        [sys.executable, os.path.abspath(__file__), "--child-load", str(args.load_seconds)],
        stdout=subprocess.PIPE, text=True)
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(x.rstrip()) for x in child.stdout],
                     daemon=True).start()
    phase = "start"
    deadline = time.monotonic() + args.load_seconds + 180
    while time.monotonic() < deadline:
        while not lines.empty():
            line = lines.get()
            print(f"       child: {line}")
            if line.startswith("LOAD_READY"):
                phase = "load"
            elif line.startswith("LOAD_DONE"):
                phase = "after"
        exited = child.poll() is not None
        snap = wait_for_sample(sampler, seq)
        seq = snap.seq
        mine = next((p for p in snap.processes
                     if p.pid == child.pid and p.gpu_index == target), None)
        rows.append((phase, snap.gpus[target], mine))
        print(gpu_row(phase, time.monotonic() - t0, snap.gpus[target], mine is not None))
        if exited and lines.empty():
            break
    if child.poll() is None:
        child.kill()
        print("child did not finish in time")
    if child.returncode:
        print(f"the load process failed (exit {child.returncode})")
        return 1
    return report(rows, child.pid)


def report(rows, child_pid: int) -> int:
    idle = [g for phase, g, _ in rows if phase == "idle"]
    load = [g for phase, g, _ in rows if phase == "load"]
    idle_util = max((g.util_gpu or 0) for g in idle)
    peak_util = max((g.util_gpu or 0) for g in load) if load else 0
    idle_mem = max((g.memory_used or 0) for g in idle)
    peak_mem = max((g.memory_used or 0) for g in load) if load else 0
    seen = [p for _, _, p in rows if p is not None]
    print()
    ok1 = peak_util > idle_util + 10
    print(f"check 1 utilization rises: idle max {idle_util}% -> load peak {peak_util}% "
          f"over {len(load)} load samples: {'PASS' if ok1 else 'FAIL'}")
    ok2 = peak_mem > idle_mem + 64 * 2**20
    print(f"check 2 memory rises: idle {idle_mem / 2**20:.0f} MiB -> load peak "
          f"{peak_mem / 2**20:.0f} MiB: {'PASS' if ok2 else 'FAIL'}")
    ok3 = bool(seen) and all(p.is_app and p.cuda_index == 0 for p in seen)
    detail = (f"pid {child_pid} seen in {len(seen)} samples as {seen[-1].name!r}, "
              f"is_app={seen[-1].is_app}, cuda:{seen[-1].cuda_index}, "
              f"{fmt(seen[-1].gpu_memory and seen[-1].gpu_memory / 2**20, '.0f')} MiB"
              if seen else f"pid {child_pid} never listed by NVML (if this runs in a container, "
                           "NVML may report host-namespace pids)")
    print(f"check 3 load process marked as this app's: {detail}: {'PASS' if ok3 else 'FAIL'}")
    if not (ok1 and ok2):
        return 1
    return 0 if ok3 else 3


if __name__ == "__main__":
    sys.exit(main())
