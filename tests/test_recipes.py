"""Recipes: every one is valid CLI input, flags override it, the run records it, the listing shows
it, unequal progressive-resizing phases expand correctly, and ``--recipe fast`` runs end to end."""

from __future__ import annotations

import dataclasses
import json
from types import SimpleNamespace

import pytest

from tinyfast.config import TrainConfig, config_from_args, explicit_fields
from tinyfast.models import is_known
from tinyfast.recipes import RECIPES, apply_recipe, get_recipe, list_recipes, prog_schedule
from tinyfast.train import build_train_parser, main

FIELDS = {f.name for f in dataclasses.fields(TrainConfig)}


def _as_flags(settings: dict) -> list[str]:
    """The command-line flags that set ``settings`` (what a user would type instead of the recipe)."""
    argv = []
    for k, v in settings.items():
        flag = "--" + k.replace("_", "-")
        if isinstance(v, bool):
            argv.append(flag if v else "--no-" + k.replace("_", "-"))
        else:
            argv += [flag, str(v)]
    return argv


def _cfg(argv: list[str]) -> TrainConfig:
    """The config ``main(argv)`` would train (parse, then the recipe under the explicit flags)."""
    args = build_train_parser().parse_args(argv)
    explicit = explicit_fields(TrainConfig, argv)
    return apply_recipe(config_from_args(TrainConfig, args), explicit)


@pytest.mark.parametrize("name", list_recipes())
def test_recipe_equals_the_same_settings_given_as_flags(name):
    """Each recipe's values pass the CLI's own converters and choices, and applying the recipe gives
    exactly the config of typing them as flags."""
    settings = dict(get_recipe(name).settings)
    assert settings and set(settings) <= FIELDS - {"recipe"}, set(settings) - FIELDS
    assert is_known(settings["arch"]), settings["arch"]
    by_flags = _cfg(_as_flags(settings))
    by_recipe = _cfg(["--recipe", name])
    assert by_recipe == dataclasses.replace(by_flags, recipe=name)
    for k, v in settings.items():
        assert getattr(by_recipe, k) == v, k
    about = get_recipe(name).about
    assert about and "\n" not in about


@pytest.mark.parametrize("name", [n for n in list_recipes() if {"lr", "batch_size"} <= set(get_recipe(n).settings)])
def test_a_recipes_lr_scales_with_another_batch_as_the_default_does(name):
    """The recipe's LR is for its batch: --batch-size 16 alone scales it by sqrt(16 / B), as the
    default LR scales (0.2 x sqrt(B / 512)); an explicit --lr is kept."""
    s = get_recipe(name).settings
    assert _cfg(["--recipe", name, "--batch-size", "16"]).lr == pytest.approx(s["lr"] * (16 / s["batch_size"]) ** 0.5)
    assert _cfg(["--recipe", name, "--batch-size", "16", "--lr", "0.123"]).lr == 0.123
    assert _cfg(["--recipe", name, "--batch-size", str(s["batch_size"])]).lr == s["lr"]


def test_every_report_system_has_a_recipe():
    archs = {r.settings["arch"] for r in RECIPES.values()}
    assert {"linear", "cnn2", "uci_cnn_deep", "uci_resnet_cnn", "vgg16", "vgg_small", "vgg_small8", "vgg_small14",
            "inception_small", "resnet34", "resnet50", "ghosh_net1", "ghosh_net2", "ting_m1", "ting_m4",
            "alexnet", "resnet18", "preact_resnet34", "densenet161", "ucsc_shallow", "ucsc_deep",
            "ucsc_mobilenet_v2"} <= archs
    assert {"fast", "best"} <= set(RECIPES)
    # The figures the reports give appear in the lines.
    for name, figure in [("uci-linear", "8.38%"), ("uci-cnn2", "14.9%"), ("uci-cnn-deep", "16.3%"),
                         ("ghosh-net2", "62.73%"), ("skoltech-densenet161", "51%"), ("ucsc-deep", "28.0%")]:
        assert figure in RECIPES[name].about, name


def test_explicit_flags_override_the_recipe():
    cfg = _cfg(["--recipe", "uci-cnn2", "--epochs", "2", "--lr", "0.05", "--aug", "flips"])
    assert (cfg.epochs, cfg.lr, cfg.aug) == (2, 0.05, "flips")
    # The rest still comes from the recipe, and a flag equal to TrainConfig's default still wins.
    assert (cfg.arch, cfg.optimizer, cfg.batch_size) == ("cnn2", "adam", 128)
    assert _cfg(["--recipe", "uci-cnn2", "--optimizer", "sgd"]).optimizer == "sgd"
    assert _cfg(["--recipe", "fast", "--no-compile"]).compile is False
    assert _cfg(["--arch", "cnn2"]) == _cfg(["--arch", "cnn2"])  # no recipe: untouched
    assert _cfg(["--arch", "cnn2"]).recipe is None and _cfg(["--arch", "cnn2"]).optimizer == "sgd"


def test_unknown_recipe_is_one_clear_line(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--recipe", "nope"])
    assert e.value.code == 2
    assert "invalid choice: 'nope'" in capsys.readouterr().err
    with pytest.raises(ValueError, match="unknown recipe 'nope'.*uci-linear"):
        get_recipe("nope")


def test_list_recipes_prints_each_name_with_its_line(capsys):
    assert main(["--list-recipes"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == len(RECIPES)
    for line, name in zip(lines, list_recipes()):
        assert line.split()[0] == name and line.endswith(RECIPES[name].about)


def test_prog_schedule_expands_unequal_phases_for_the_trainer():
    """32/64/16/64 px for 15/30/10/180 epochs, through the trainer's own phase rule."""
    phases = ((32, 15), (64, 30), (16, 10), (64, 180))
    value = prog_schedule(*phases)
    assert value == ":".join(["32"] * 3 + ["64"] * 6 + ["16"] * 2 + ["64"] * 36)
    assert prog_schedule((32, 2), (64, 3)) == "32:32:64:64:64"
    epochs = sum(n for _, n in phases)
    from tinyfast.trainer.build import Phases

    from tinyfast.phases import epoch_phases
    cfg = TrainConfig(prog_resize=value, epochs=epochs, batch_size=64)
    fake = SimpleNamespace(loader=SimpleNamespace(height=64), cfg=cfg, plan=[p for _, p in epoch_phases(cfg, 64)])
    got = [Phases.image_size(fake, e) for e in range(epochs)]
    want = [size for size, n in phases for _ in range(n)]
    assert got == want


def _dry(argv: list[str], capsys) -> tuple[int, dict | None, list[str]]:
    status = main(argv + ["--print-config"])
    out = capsys.readouterr()
    return status, json.loads(out.out) if status == 0 else None, out.err.strip().splitlines()


def test_no_freeze_drops_the_recipes_freeze_schedule_and_blames_only_given_flags(capsys):
    """--no-freeze over a recipe with --unfreeze-every: the recipe's schedule goes with its freeze
    (no error naming a flag the user never gave); both given explicitly is the user's conflict."""
    status, dry, err = _dry(["--recipe", "uci-vgg16", "--pretrained", "none", "--no-freeze"], capsys)
    assert status == 0, err
    assert (dry["config"]["freeze"], dry["config"]["unfreeze_every"], dry["config"]["pretrained"]) == (False, 0, None)
    assert all(e["trainable_groups"] == len(dry["layer_groups"]) for e in dry["epochs"])
    status, _, err = _dry(["--recipe", "uci-vgg16", "--no-freeze", "--unfreeze-every", "3"], capsys)
    assert status == 2 and len(err) == 1 and "--unfreeze-every needs --freeze" in err[0], err


@pytest.mark.parametrize("recipe", ["ucsc-mobilenet", "uci-vgg16"])
def test_a_recipes_freeze_over_pretrained_none_is_refused_naming_the_way_out(recipe, capsys):
    """Freezing the body of a model with no weights loaded trains a head on random features."""
    status, _, err = _dry(["--recipe", recipe, "--pretrained", "none"], capsys)
    assert status == 2 and len(err) == 1, err
    for part in (f"--recipe {recipe}", "--pretrained none", "random", "--no-freeze"):
        assert part in err[0], (part, err[0])
    status, dry, err = _dry(["--recipe", recipe, "--pretrained", "none", "--no-freeze"], capsys)
    assert status == 0 and not dry["config"]["freeze"], err


def test_shortening_a_recipe_notes_the_dropped_sizes_and_the_kept_lr(capsys):
    """--recipe fast is 16 epochs over 32:48:64:64 px at lr 0.6: one epoch runs only the 32 px
    phase (the trainer's rule: epoch e of E in phase e*P//E) and keeps lr 0.6; a note says so."""
    status, dry, err = _dry(["--recipe", "fast", "--epochs", "1"], capsys)
    assert status == 0, err
    assert [e["image_size"] for e in dry["epochs"]] == [32]
    notes = [n for n in dry["notes"] if "--epochs 1" in n]
    assert len(notes) == 1, dry["notes"]
    for part in ("--recipe fast", "16 epochs", "32 px only", "dropped 48, 64, 64 px", "lr 0.6"):
        assert part in notes[0], (part, notes[0])
    status, dry, err = _dry(["--recipe", "fast"], capsys)  # the recipe as written: no note
    assert status == 0 and not [n for n in dry["notes"] if "--epochs" in n], dry["notes"]


@pytest.fixture(scope="module")
def data64(packed_synthetic):
    """4 classes x 8 train + 4 val images at the real 64 px."""
    return packed_synthetic("synth64", classes=4, per_class=8, val_per_class=4, test_count=4)


def test_fast_recipe_runs_end_to_end_on_cpu(data64, tmp_path, capsys):
    """``--recipe fast`` with only its length, batch and compilation shrunk: the recipe's progressive
    sizes, EMA and smoothing are what ran, and the reported val top-1 is what an independent
    evaluation of the saved weights gives."""
    from tinyfast.evaluate import main as evaluate_main
    runs = tmp_path / "runs"
    argv = ["--recipe", "fast", "--data", data64, "--epochs", "4", "--batch-size", "16", "--no-compile",
            "--device", "cpu", "--eval-every", "1", "--out-dir", str(runs), "--name", "fast", "--no-progress"]
    assert main(argv) == 0
    out = capsys.readouterr()
    lines = (out.out + out.err).splitlines()
    notes = [ln for ln in lines if ln.startswith("note: --epochs 4")]
    assert len(notes) == 1 and "dropped" not in notes[0], notes
    run = runs / "fast"
    saved = json.loads((run / "config.json").read_text())["config"]
    assert saved["recipe"] == "fast" and saved["arch"] == "resnet18"
    assert (saved["epochs"], saved["batch_size"], saved["compile"]) == (4, 16, False)
    for k in ("prog_resize", "ema", "label_smoothing", "schedule", "weight_decay", "aug"):
        assert saved[k] == RECIPES["fast"].settings[k], k
    assert saved["lr"] == pytest.approx(0.6 * (16 / 1024) ** 0.5)  # the recipe's 0.6 is for batch 1024
    notes = [ln for ln in lines if "--batch-size 16" in ln]
    assert len(notes) == 1 and "lr 0.6" in notes[0] and "0.075" in notes[0] and "--lr" in notes[0], notes
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["image_size"] for r in rows] == [32, 48, 64, 64]
    assert all(0.0 <= r["val_top1"] <= 1.0 for r in rows)
    capsys.readouterr()
    out = tmp_path / "eval.json"
    assert evaluate_main([str(run / "last.pt"), "--device", "cpu", "--no-progress", "--output", str(out)]) == 0
    scores = json.loads(out.read_text())
    top1 = scores["models"][0]["top1"] if "models" in scores else scores["top1"]
    assert top1 == pytest.approx(rows[-1]["val_top1"], abs=1e-9)


def test_the_python_api_resolves_a_recipe_as_the_cli_does(data64, tmp_path, capsys):
    """``train(TrainConfig(recipe=...))`` trains what ``--recipe`` with the same flags trains: the
    recipe fills the fields the caller left at their defaults."""
    from tinyfast.train import train
    runs = tmp_path / "runs"
    common = dict(data=data64, epochs=1, batch_size=16, device="cpu", stop_at_step=1, out_dir=str(runs), progress=False)
    tr = train(TrainConfig(recipe="uci-cnn2", name="api", **common))
    argv = ["--recipe", "uci-cnn2", "--data", data64, "--epochs", "1", "--batch-size", "16", "--device", "cpu",
            "--stop-at-step", "1",
            "--out-dir", str(runs), "--name", "cli", "--no-progress"]
    assert main(argv) == 0
    api, cli = (json.loads((runs / n / "config.json").read_text())["config"] for n in ("api", "cli"))
    assert api.pop("name") == "api" and cli.pop("name") == "cli"
    assert api == cli
    s = get_recipe("uci-cnn2").settings
    want = dict(s, epochs=1, batch_size=16, lr=pytest.approx(s["lr"] * (16 / s["batch_size"]) ** 0.5))
    assert {k: api[k] for k in want} == want
    assert type(tr.optimizer).__name__ == "Adam"


def test_reproduction_recipes_depend_on_no_trainer_default():
    """A report's recipe states its optimizer, schedule, weight decay and label smoothing itself
    (the trainer's defaults are this project's choices, e.g. smoothing 0.1: never silently a
    report's); ``fast`` and ``best`` are ours and may take them."""
    needed = {"optimizer", "schedule", "weight_decay", "label_smoothing"}
    missing = {name: sorted(needed - set(r.settings)) for name, r in RECIPES.items()
               if name not in ("fast", "best") and needed - set(r.settings)}
    assert not missing, missing
