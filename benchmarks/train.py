"""Section c of ``tinyfast-bench``: images/s of a training step (forward, backward, SGD step) per
architecture, with channels-last + AMP on and off, fed by a fixed batch already on the device (that
model's ceiling) and by each loader; every fed row's fraction of its ceiling.
"""
from __future__ import annotations

import statistics
import time
from pathlib import Path

import torch

from benchmarks import common
from benchmarks.common import skip_reason
from benchmarks.reporting import flag_ratio

def _train_steps(model, opt, batches, device, amp: bool, channels_last: bool, steps: int, warmup: int,
                 runs: int) -> float:
    """Median images/sec of ``steps`` SGD steps; ``batches`` is an endless iterator of (x, y)."""
    # A GPU computes bf16 natively from sm_80 on (torch's default check also counts emulated bf16).
    bf16 = device.type == "cpu" or torch.cuda.is_bf16_supported(including_emulation=False)
    amp_dtype = torch.bfloat16 if bf16 else torch.float16
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    loss_fn = torch.nn.CrossEntropyLoss()

    def step():
        x, y = next(batches)
        x = x.to(memory_format=fmt)
        if not amp:
            x = x.float()
        with torch.autocast(device.type, dtype=amp_dtype, enabled=amp):
            loss = loss_fn(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return x.shape[0]

    for _ in range(warmup):
        step()
    common.sync(device)
    rates = []
    for _ in range(runs):
        t0 = time.perf_counter()
        n = sum(step() for _ in range(steps))
        common.sync(device)
        rates.append(n / (time.perf_counter() - t0))
    return statistics.median(rates)


def _endless(loader):
    epoch = 0
    while True:
        loader.set_epoch(epoch)
        yield from loader
        epoch += 1


def section(data: Path, device: torch.device, archs: list[str], feeds: list[str], args) -> list[dict]:
    """Section c: train-step images/s per architecture, with and without channels-last + AMP, fed
    by a fixed on-device batch (the ceiling) and by each loader in ``feeds``."""
    from tinyfast import loaders
    from tinyfast.data import open_packed
    from tinyfast.models import get_model

    num_classes = open_packed(data, "train").num_classes
    rows = []
    bs = args.batch_size
    for arch in archs:
        for cl_amp in (True, False):
            model = get_model(arch, num_classes=num_classes).to(device)
            if cl_amp:
                model = model.to(memory_format=torch.channels_last)
            opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
            for feed in ["synthetic"] + feeds:
                row = {"arch": arch, "feed": feed, "channels_last_amp": cl_amp, "batch_size": bs,
                       "device": str(device)}
                loader = None
                try:
                    if feed == "synthetic":  # the ceiling: one fixed batch already on the device
                        x = torch.randn(bs, 3, 64, 64, device=device).to(memory_format=torch.channels_last)
                        y = torch.randint(0, num_classes, (bs,), device=device)
                        it = iter(lambda: (x, y), None)
                    else:
                        loader = loaders.build(feed, data, "train", bs, device=device, policy="default",
                                               dtype=torch.bfloat16 if cl_amp else torch.float32)
                        it = _endless(loader)
                    row["images_per_sec"] = _train_steps(model, opt, it, device, cl_amp, cl_amp, args.batches,
                                                         1 if args.quick else 5, args.runs)
                except (ImportError, ValueError, RuntimeError, OSError) as exc:
                    row["skipped"] = skip_reason(exc)
                finally:
                    if loader is not None:  # stop its workers now: left running they slow the next row
                        loader.close()
                rows.append(row)
                got = f"{row['images_per_sec']:,.0f} images/s" if "images_per_sec" in row else f"skipped ({row['skipped']})"
                print(f"  train {arch:<13} cl+amp={cl_amp!s:<5} feed {feed:<12}: {got}", flush=True)
            del model, opt
    ceiling = {(r["arch"], r["channels_last_amp"]): r.get("images_per_sec") for r in rows if r["feed"] == "synthetic"}
    for r in rows:
        c = ceiling.get((r["arch"], r["channels_last_amp"]))
        if c and "images_per_sec" in r:
            flag_ratio(r, "fraction_of_ceiling", r["images_per_sec"] / c)
    return rows
