"""docs/recipes.md's recipe table against the recipes themselves: one row per recipe of
``tinyfast/recipes.json`` and no other, each row's report one of the page's five reports (the one
its name's prefix names), its figures the ones its recipe's line quotes, and its parameter count
within 1% of the model the recipe builds, constructed on the CPU and counted tensor by tensor."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch

from tinyfast.models import get_model
from tinyfast.recipes import get_recipe, list_recipes
from tinyfast.train import main

PAGE = Path(__file__).resolve().parents[1] / "docs" / "recipes.md"


def tables(text: str) -> list[list[list[str]]]:
    """Every Markdown table of ``text``: its rows (header first, the |---| line dropped), as cells."""
    out, rows = [], []
    for line in [*text.splitlines(), ""]:
        if line.startswith("|"):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if not all(re.fullmatch(r":?-+:?", c) for c in cells):
                rows.append(cells)
        elif rows:
            out.append(rows)
            rows = []
    return out


def table_with(column: str) -> list[dict[str, str]]:
    """The page's one table with a header cell starting ``column``, as dicts keyed by header."""
    found = [t for t in tables(PAGE.read_text(encoding="utf-8"))
             if any(h.lower().startswith(column) for h in t[0])]
    assert len(found) == 1, f"{PAGE}: {len(found)} tables with a {column!r} column"
    header, *rows = found[0]
    assert all(len(r) == len(header) for r in rows), [r[0] for r in rows if len(r) != len(header)]
    return [dict(zip(header, r)) for r in rows]


def recipe_rows() -> dict[str, dict[str, str]]:
    rows = {}
    for row in table_with("params here"):
        name = re.fullmatch(r"`([^`]+)`", row["recipe"])
        assert name, f"recipe cell {row['recipe']!r} is not one `name`"
        assert name[1] not in rows, f"two rows for {name[1]}"
        rows[name[1]] = row
    return rows


def cell(row: dict[str, str], start: str) -> str:
    (key,) = [k for k in row if k.lower().startswith(start)]
    return row[key]


def parse_count(text: str) -> float:
    """``"8.43M"`` -> 8.43e6, ``"584k (100 classes)"`` -> 584e3."""
    m = re.match(r"([\d.]+)\s*([kM])\b", text)
    assert m, f"parameter cell {text!r} has no count like 8.43M or 584k"
    return float(m[1]) * {"k": 1e3, "M": 1e6}[m[2]]


def test_every_recipe_has_one_row_and_every_row_a_recipe():
    rows = recipe_rows()
    assert sorted(set(list_recipes()) - set(rows)) == [], "recipes with no row in docs/recipes.md"
    assert sorted(set(rows) - set(list_recipes())) == [], "rows naming no recipe"


def test_each_row_names_the_report_of_its_prefix():
    """The report cell carries the first author of the reports table's row for the recipe's prefix;
    ``fast`` and ``best`` name none."""
    authors = {}
    for row in table_with("prefix"):
        prefix = re.fullmatch(r"`([a-z]+)-\*`", row["prefix"])[1]
        authors[prefix] = re.split(r"[ ,]", row["authors"])[0]
    assert len(authors) == 5
    for name, row in recipe_rows().items():
        report = cell(row, "report")
        prefix = name.split("-")[0]
        if prefix in authors:
            assert authors[prefix] in report, (name, report, authors[prefix])
        else:
            assert not any(a in report for a in authors.values()), (name, report)


def test_each_rows_figures_are_the_ones_its_recipe_quotes():
    for name, row in recipe_rows().items():
        for figure in re.findall(r"\d+(?:\.\d+)?%", cell(row, "the report's figure")):
            assert figure in get_recipe(name).about, (name, figure)


def real_count(recipe: str, capsys) -> tuple[int, int]:
    """The recipe's model built on the CPU as its dry run says (arch, kwargs, class count), and
    its parameters counted; with the class count."""
    classes = 100 if recipe.startswith("ucsc-") else 200
    capsys.readouterr()
    assert main(["--recipe", recipe, "--print-config", "--device", "cpu", "--classes", str(classes)]) == 0
    model = json.loads(capsys.readouterr().out)["model"]
    torch.manual_seed(0)
    net = get_model(model["arch"], num_classes=classes, **model["kwargs"])
    return sum(p.numel() for p in net.parameters()), classes


@pytest.mark.parametrize("recipe", list_recipes())
def test_row_parameter_count_is_the_models_within_1_percent(recipe, capsys):
    row = recipe_rows().get(recipe)
    assert row is not None, f"no row for {recipe}"
    text = cell(row, "params here")
    real, classes = real_count(recipe, capsys)
    assert ("100 classes" in text) == (classes == 100), (recipe, text)
    assert abs(parse_count(text) - real) <= 0.01 * real, (recipe, text, real)
