"""Shared by the per-report recipe tests (``test_recipes_<report>.py``): a recipe's dry run
(``--print-config``) held against a table of what its report states.

Each table row is ``recipe -> {"classes": N, "parameters": count, "config": {field: value}}``:
``parameters`` is the report's own figure where it gives one (with the rounding it is given to,
``report_m``: millions) or a count worked out by hand from the report's layer list, and ``config``
the settings the report states (or that the recipe's line marks as chosen)."""

from __future__ import annotations

import json

import pytest

from tinyfast.train import main


def dry(argv, capsys) -> dict:
    """The JSON ``--print-config`` prints for ``argv`` on the CPU (exit status 0)."""
    capsys.readouterr()
    assert main([*argv, "--print-config", "--device", "cpu"]) == 0
    return json.loads(capsys.readouterr().out)


def check_row(recipe: str, row: dict, capsys) -> dict:
    """``recipe``'s dry run against its table ``row``; returns the dry run."""
    out = dry(["--recipe", recipe, "--classes", str(row.get("classes", 200))], capsys)
    if "parameters" in row:
        assert out["parameters"] == row["parameters"], recipe
    if "report_m" in row:  # the report's figure, in millions, to the digits it gives
        digits = len(str(row["report_m"]).partition(".")[2])
        assert round(out["parameters"] / 1e6, digits) == pytest.approx(row["report_m"]), recipe
    cfg = out["config"]
    for k, v in row.get("config", {}).items():
        assert cfg[k] == v, (recipe, k, cfg[k], v)
    for word in row.get("about", ()):
        from tinyfast.recipes import get_recipe
        assert word in get_recipe(recipe).about, (recipe, word)
    return out
