"""Named training recipes: ``python -m tinyfast.train --recipe NAME``.

A recipe is data, one line of ``tinyfast/recipes.json``: a one-line description (what it
reproduces, and the accuracy that report gives) plus overrides of :class:`tinyfast.config.TrainConfig` fields. Flags given explicitly on the
command line win over the recipe; fields a recipe does not set keep their usual defaults. The run's
``config.json`` names the recipe (the ``recipe`` field).

Where a report does not state a setting, the recipe makes a choice and its line says so ("chosen"
below).

    python -m tinyfast.train --list-recipes
    python -m tinyfast.train --recipe uci-cnn2 --data data/tiny-imagenet --epochs 5
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from functools import reduce
from pathlib import Path
from typing import Any, Mapping

from tinyfast.phases import format_phases

__all__ = ["Recipe", "RECIPES", "get_recipe", "list_recipes", "recipes_table", "apply_recipe",
           "prog_schedule", "recipe_notes", "recipe_lr_note"]


@dataclass(frozen=True)
class Recipe:
    """One row of :data:`RECIPES`: a description and the ``TrainConfig`` fields it sets."""

    about: str
    settings: Mapping[str, Any] = field(default_factory=dict)


def prog_schedule(*phases: tuple[int, int]) -> str:
    """A ``--prog-resize`` value for phases of unequal length, ``(size, epochs)`` each.

    ``--prog-resize`` takes equal-length phases, so each phase is repeated ``epochs / g`` times,
    ``g`` the greatest common divisor of the lengths: ``prog_schedule((32, 15), (64, 30))`` is
    ``"32:64:64"`` over 45 epochs. The run's ``--epochs`` must be the sum of the lengths.
    """
    g = reduce(math.gcd, (n for _, n in phases))
    return ":".join(str(size) for size, n in phases for _ in range(n // g))


# The table itself is data: tinyfast/recipes.json, one line per recipe ("about", the "base" of
# shared settings it starts from, its own "settings"). "prog_phases" ([[size, epochs], ...]) is
# expanded by prog_schedule() into --prog-resize and --epochs; "phases" ([{"epochs", "size", "batch",
# "aug"}, ...]) into --phases and --epochs.
_TABLE = Path(__file__).with_name("recipes.json")


def _load(path: Path = _TABLE) -> dict[str, Recipe]:
    """The recipes of ``path``: each its base's settings updated by its own, phases expanded."""
    table = json.loads(path.read_text(encoding="utf-8"))
    bases = table["bases"]
    out = {}
    for name, row in table["recipes"].items():
        settings = dict(bases[row["base"]]) if row.get("base") else {}
        settings.update(row.get("settings", {}))
        phases = settings.pop("prog_phases", None)
        if phases:
            settings["prog_resize"] = prog_schedule(*(tuple(p) for p in phases))
            settings["epochs"] = sum(n for _, n in phases)
        if isinstance(settings.get("phases"), list):  # [{"epochs", "size", "batch", "aug"}, ...]
            settings["epochs"] = sum(p["epochs"] for p in settings["phases"])
            settings["phases"] = format_phases(settings["phases"])
        out[name] = Recipe(row["about"], settings)
    return out


RECIPES: dict[str, Recipe] = _load()


def list_recipes() -> list[str]:
    """The recipe names, sorted."""
    return sorted(RECIPES)


def get_recipe(name: str) -> Recipe:
    """The recipe called ``name``.

    Raises:
        ValueError: unknown name (the message lists the choices).
    """
    try:
        return RECIPES[name]
    except KeyError:
        raise ValueError(f"unknown recipe {name!r} (choose one of: {', '.join(list_recipes())})") from None


def recipes_table() -> str:
    """What ``--list-recipes`` prints: one line per recipe, name and description."""
    width = max(map(len, RECIPES)) + 2
    return "\n".join(f"{name:<{width}}{RECIPES[name].about}" for name in list_recipes())


def apply_recipe(cfg, explicit: set[str] | frozenset = frozenset()):
    """``cfg`` (a ``TrainConfig``) with the settings of its ``cfg.recipe`` filled in, except the
    fields in ``explicit`` (given on the command line), which keep their values.

    An explicit ``--no-freeze`` also drops the recipe's ``unfreeze_every``/``unfreeze_groups``
    (a schedule of the freeze the user turned off). A recipe's ``lr`` is for its ``batch_size``:
    with another ``--batch-size`` and no ``--lr`` it scales by sqrt(B / recipe batch), as the
    default LR scales with the batch (see :func:`recipe_lr_note`). A config without a recipe is
    returned unchanged.

    Raises:
        ConfigError: the recipe would freeze the body of a model that an explicit ``--pretrained
            none`` leaves random (one line naming both and the way out).
    """
    if not cfg.recipe:
        return cfg
    settings = dict(get_recipe(cfg.recipe).settings)
    if "freeze" in explicit and not cfg.freeze:
        settings.pop("unfreeze_every", None)
        settings.pop("unfreeze_groups", None)
    if settings.get("freeze") and "freeze" not in explicit and "pretrained" in explicit and not cfg.pretrained:
        from tinyfast.errors import ConfigError
        raise ConfigError(f"--recipe {cfg.recipe} freezes all but the head (its --freeze), and --pretrained "
                          "none leaves those layers random: add --no-freeze to train the whole model from "
                          "scratch, or give --pretrained imagenet|PATH")
    scaled = _scaled_lr(cfg, settings, explicit)
    if scaled is not None:
        settings["lr"] = scaled
    return dataclasses.replace(cfg, **{k: v for k, v in settings.items() if k not in explicit})


def recipe_notes(cfg) -> list[str]:
    """One line when ``cfg`` (a recipe applied) runs the recipe for other ``--epochs`` than its
    own: which ``--prog-resize`` phases then run or are dropped, and that its LR is kept."""
    settings = get_recipe(cfg.recipe).settings if cfg.recipe else {}
    own = settings.get("epochs")
    if not own or not cfg.epochs or cfg.epochs == own:
        return []
    parts = []
    if cfg.prog_resize and cfg.prog_resize == settings.get("prog_resize"):
        from tinyfast.phases import epoch_phases, parse_prog_resize
        sizes = parse_prog_resize(cfg.prog_resize)
        ran = {i for i, _ in epoch_phases(cfg)}
        dropped = [sizes[i] for i in range(len(sizes)) if i not in ran]
        if dropped:
            kept = sorted({sizes[i] for i in ran}, key=sizes.index)
            parts.append(f"--prog-resize {cfg.prog_resize} trains at {', '.join(map(str, kept))} px only "
                         f"(dropped {', '.join(map(str, dropped))} px)")
    if cfg.lr is not None and cfg.lr == settings.get("lr"):
        parts.append(f"lr {cfg.lr:g} and the rest of the recipe kept as for {own} epochs (--lr to change)")
    return [f"--epochs {cfg.epochs} instead of --recipe {cfg.recipe}'s {own} epochs: "
            + ("; ".join(parts) or "the rest of the recipe kept")]


def _scaled_lr(cfg, settings, explicit) -> float | None:
    """The recipe's LR for the explicit ``--batch-size`` (``None`` where it applies unchanged)."""
    if ("lr" in explicit or "batch_size" not in explicit or not {"lr", "batch_size"} <= set(settings)
            or cfg.batch_size in (None, settings["batch_size"])):
        return None
    return settings["lr"] * (cfg.batch_size / settings["batch_size"]) ** 0.5


def recipe_lr_note(cfg, explicit) -> str | None:
    """The one line a run prints when :func:`apply_recipe` scaled the recipe's LR (else ``None``)."""
    if not cfg.recipe:
        return None
    settings = get_recipe(cfg.recipe).settings
    scaled = _scaled_lr(cfg, settings, explicit)
    if scaled is None:
        return None
    return (f"note: --recipe {cfg.recipe}: its lr {settings['lr']:g} is for batch {settings['batch_size']}; at "
            f"--batch-size {cfg.batch_size} it is scaled as the default LR is, by sqrt({cfg.batch_size}/"
            f"{settings['batch_size']}), to {scaled:.3g} (--lr sets it)")
