"""The report of ``tinyfast-bench`` (and of the GPU proof, which shares its schema): ratio flags,
the Markdown tables, the PNG chart and the result files.

Schema (JSON): ``device_name``, ``device``, ``quick``, ``command``, ``data``, ``environment``
(:func:`benchmarks.common.environment`), ``ceilings`` (:func:`benchmarks.common.ceilings`), and
per section run: ``loaders`` (rows), ``op`` (``rows`` + ``summary``), ``train`` (rows), ``time_to_accuracy``.
"""
from __future__ import annotations

import io
from pathlib import Path

from benchmarks import common

def flag_ratio(row: dict, key: str, value: float) -> None:
    """Store a measured/ceiling ratio; above 1 the row is flagged: nothing beats its ceiling, so
    it is a measurement problem (timing noise, too few batches, a cache-resident working set)."""
    row[key] = value
    if value > 1.0:
        row["flag"] = (f"{key.replace('_', ' ')} {value:.2f} > 1: a measurement problem, not a "
                       "speed-up (noise or cache effects; rerun with more --batches/--runs)")


def _note(row: dict) -> str | None:
    if "skipped" in row:
        return f"skipped: {row['skipped']}"
    return row.get("flag")


def _shown(rows: list[dict]) -> list[dict]:
    """Rows as the tables show them: a skipped row says so in its figure and gives the reason."""
    return [dict(r, images_per_sec=r.get("images_per_sec", "skipped"), note=_note(r)) for r in rows]


def _loaders_md(rows: list[dict]) -> list[str]:
    lines = ["## Loaders (images/s, training augmentation)", "",
             common.format_table(_shown(rows), [
                 ("loader", "loader", ""), ("input", "reads", ""), ("workers", "workers", ""),
                 ("images_per_sec", "images/s", ",.0f"), ("speedup_vs_torch_best", "x best torch", ".1f"),
                 ("note", "note", "")]), ""]
    skipped = sorted({r["loader"] for r in rows if "skipped" in r})
    if not any(r["loader"] == "torch" and "images_per_sec" in r for r in rows):
        lines += ["No `torch` baseline row was measured (see its note), so there are no speed-ups.", ""]
    if skipped:
        lines += [f"Skipped here: {', '.join(skipped)} (reasons in the note column).", ""]
    return lines


def duration(seconds: float) -> str:
    if seconds > 2 * 86400:
        return f"about {seconds / 86400:,.0f} days"
    if seconds > 5400:
        return f"about {seconds / 3600:.1f} hours"
    return f"about {max(1, round(seconds / 60))} minutes"



def markdown(report: dict) -> str:
    """The report as Markdown: environment, ceilings and one table per section."""
    env, ce = report["environment"], report["ceilings"]
    lines = [f"# tinyfast benchmarks: {report['device_name']}", "",
             f"- date {env['date']}, commit {env['git']['commit']}{' (dirty)' if env['git']['dirty'] else ''}",
             f"- torch {env['torch']} (CUDA {env['torch_cuda']}), driver {env.get('driver')}, "
             f"DALI {env.get('dali_version')}, FFCV {env.get('ffcv_version')}, CPU {env['cpu']} x{env['cpu_count']}",
             f"- command: `{report['command']}`; data: {report['data']}",
             f"- ceilings, measured once for this run and used by every ratio below: copy "
             f"{ce['copy_gb_per_s']:.1f} GB/s (device to device, {ce['copy_bytes'] / 2 ** 21:.0f} MiB buffer, "
             f"bytes read + written), matmul ({ce['matmul_dtype']}) {ce['matmul_tflop_per_s']:.2f} TFLOP/s; "
             "a training row's ceiling is the same model fed a fixed batch already on the device", ""]
    if report.get("estimated_seconds"):
        lines[-1:-1] = [f"- full suite on the CPU (no GPU in use): estimated {duration(report['estimated_seconds'])}"]
    if report.get("loaders"):
        lines += _loaders_md(report["loaders"])
    if report.get("op"):
        lines += ["## Fused op", "", common.format_table(_shown(report["op"]["rows"]), [
            ("device", "device", ""), ("impl", "implementation", ""), ("mode", "mode", ""), ("batch", "batch", ""),
            ("images_per_s", "images/s", ",.0f"), ("gb_per_s", "GB/s", ".2f"),
            ("fraction_of_copy_ceiling", "of copy ceiling", ".2f"), ("note", "note", "")]), ""]
        for k, v in report["op"]["summary"].items():
            lines.append(f"- {k}: {v:.3f}" if isinstance(v, float) else f"- {k}: {v}")
        lines.append("")
    if report.get("train"):
        lines += ["## Training (images/s of SGD steps)", "", common.format_table(_shown(report["train"]), [
            ("arch", "arch", ""), ("channels_last_amp", "channels-last+AMP", ""), ("feed", "fed by", ""),
            ("images_per_sec", "images/s", ",.0f"), ("fraction_of_ceiling", "of ceiling", ".2f"),
            ("note", "note", "")]), ""]
    if report.get("time_to_accuracy"):
        t = report["time_to_accuracy"]
        lines += ["## Time to accuracy", "",
                  f"- `{t['command']}`",
                  f"- target top-1 {t['target_top1']}: " + (
                      f"reached at epoch {t['epoch']} after {t['train_seconds_to_target']:.1f} s of training"
                      if t["reached"] else f"not reached in {t['epochs_run']} epochs"),
                  f"- final val top-1 {t.get('final_val_top1')}, wall {t['wall_s']:.1f} s", ""]
    return "\n".join(lines)


def bar_chart(report: dict, path: Path) -> Path | None:
    """Loader images/s (log scale) and training fraction of ceiling, as one PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lrows = [r for r in report.get("loaders", []) if "images_per_sec" in r]
    trows = [r for r in report.get("train", []) if "images_per_sec" in r and r["channels_last_amp"]]
    if not lrows and not trows:
        return None
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.5))
    if lrows:
        labels = [r["loader"] + (" jpeg" if r.get("source") == "jpeg" else "")
                  + (f" w{r['workers']}" if r["workers"] is not None else "") for r in lrows]
        axes[0].bar(labels, [r["images_per_sec"] for r in lrows], color="tab:blue")
        axes[0].set_yscale("log")
        axes[0].set_ylabel("images / s")
        axes[0].set_title("loaders (training augmentation)")
        axes[0].tick_params(axis="x", rotation=45)
    if trows:
        labels = [f"{r['arch']}\n{r['feed']}" for r in trows]
        axes[1].bar(labels, [r["images_per_sec"] for r in trows], color="tab:orange")
        axes[1].set_ylabel("images / s")
        axes[1].set_title("training step, channels-last + AMP")
        axes[1].tick_params(axis="x", rotation=60, labelsize=7)
    fig.suptitle(f"tinyfast — {report['device_name']}")
    fig.tight_layout()
    buf = io.BytesIO()
    try:
        fig.savefig(buf, format="png", dpi=110)
    finally:
        plt.close(fig)
    common.atomic_write_bytes(path, buf.getvalue())
    return path


def write_report(report: dict, out_dir: Path) -> dict:
    """``<device>-<date>-<time>.{json,md,png}`` in ``out_dir``; returns the paths written."""
    stem = f"{common.slug(report['device_name'])}-{common.stamp(report['environment']['date'])}"
    paths = {"json": out_dir / f"{stem}.json", "md": out_dir / f"{stem}.md", "png": out_dir / f"{stem}.png"}
    common.write_json(paths["json"], report)
    text = markdown(report)
    common.atomic_write_text(paths["md"], text + "\n")
    if bar_chart(report, paths["png"]) is None:
        paths.pop("png")
    print(text)
    print("wrote " + ", ".join(str(p) for p in paths.values()))
    return {k: str(v) for k, v in paths.items()}
