"""Verdicts of the GPU proof: what the targets read must be what the benchmarks write."""
import argparse

import pytest
import torch

from benchmarks.proof import cli, evidence, runner as proof_runner, verdict


def _op_section_cpu(tmp_path):
    from benchmarks import common, op

    args = argparse.Namespace(quick=True)
    ce = common.ceilings(torch.device("cpu"), True)
    return op.section(torch.device("cpu"), args, tmp_path, copy_gb_per_s=ce["copy_gb_per_s"]), ce


def _report(op=None, tests=None, sanitizers=None, quick=False):
    return {"quick": quick, "device": "cuda", "op": op or {}, "loaders": [], "train": [],
            "proof": {"wall_s": 100.0, "budget_s": 470.0,
                      "tests": tests or {"status": "ok", "counts": {"passed": 10}},
                      "sanitizers": sanitizers or {}, "syncs": {"rows": []}}}


def test_the_op_target_reads_what_the_real_op_section_writes(tmp_path):
    op, _ = _op_section_cpu(tmp_path)
    t = {x["name"]: x for x in verdict.targets(_report(op=op))}["op fraction of copy"]
    assert t["value"] is not None, op["summary"]


def _cuda_row(batch, mode, gb):
    return {"device": "cuda", "impl": "tinyfast op", "mode": mode, "batch": batch, "gb_per_s": gb,
            "images_per_s": gb * 1e9 / 36864}


def test_the_op_headline_is_an_eager_row_at_batch_4096_or_more():
    from benchmarks import op

    rows = [_cuda_row(1024, "batched kernel", 2900.0), _cuda_row(1024, "batched kernel, graph replay", 3600.0),
            _cuda_row(4096, "batched kernel", 2500.0), _cuda_row(4096, "kernel + fused gather", 2400.0),
            _cuda_row(8192, "batched kernel, graph replay", 3100.0),
            {"device": "cuda", "impl": "copy (ceiling)", "mode": "1024 MiB", "batch": None, "gb_per_s": 3000.0,
             "images_per_s": None}]
    s = op.summarise(rows)
    assert s["op_fraction_of_copy"] == pytest.approx(2500.0 / 3000.0)
    assert s["op_fraction_of_copy_from"] == "cuda batch 4096, batched kernel" and s["op_device"] == "cuda"
    # and that is what the verdict reads
    t = {x["name"]: x for x in verdict.targets(_report(op={"summary": s}))}["op fraction of copy"]
    assert t["value"] == pytest.approx(2500.0 / 3000.0) and t["met"] is True


@pytest.mark.parametrize("tests", [
    {"status": "timeout", "counts": {"passed": 60}, "reason": "pytest reached its cap"},
    {"status": "failed", "counts": {"passed": 60}, "reason": "pytest exited -11"},
    {"status": "failed", "counts": {}, "reason": "pytest exited 1"},
])
def test_a_tests_phase_that_did_not_finish_cleanly_is_never_met(tests):
    t = {x["name"]: x for x in verdict.targets(_report(tests=tests))}["cuda tests failed"]
    assert t["met"] is False, t


def test_a_skipped_tests_phase_is_not_applicable():
    t = {x["name"]: x for x in verdict.targets(_report(tests={"status": "skipped", "counts": {}}))}["cuda tests failed"]
    assert t["met"] is None


def test_a_sanitizer_phase_in_which_no_tool_ran_is_skipped(tmp_path, monkeypatch):
    fake = tmp_path / "compute-sanitizer"
    fake.write_text("#!/bin/sh\necho '========= Error: Target application terminated before first instrumented API call'\n"
                    "exit 3\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:" + __import__("os").environ["PATH"])
    args = cli.parse_args(["--out", str(tmp_path), "--work", str(tmp_path)])
    runner = proof_runner.Runner(args, "t")
    res = evidence.phase_sanitizers(runner, 60)
    assert res["status"] == "skipped", res
    assert res["memcheck"]["status"] == "skipped" and res["racecheck"]["status"] == "skipped"
