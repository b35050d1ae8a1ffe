"""Each checkpoint records the normalisation it was trained with (per-channel mean/std, or the
train split's mean image), and evaluate/predict feed every checkpoint of an ensemble its own,
whatever ``--data`` is; a resumed finished run keeps its summary's class lists."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from tinyfast.checkpoint import load_checkpoint, model_from_checkpoint
from tinyfast.config import EvalConfig, TrainConfig
from tinyfast.train import main as train_main
from tinyfast.train import train


def _pack(tmp_path_factory, name: str, seed: int) -> str:
    from tinyfast.pack import pack_synthetic
    out = tmp_path_factory.mktemp(name) / "synth"
    pack_synthetic(out, size=32, classes=4, per_class=32, val_per_class=8, test_count=4, seed=seed,
                   progress=False, log=None)
    return str(out)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """One-epoch runs on the same data: per-channel and mean-image normalisation."""
    data = _pack(tmp_path_factory, "norm", seed=0)
    out = tmp_path_factory.mktemp("runs")
    cks = {}
    for kind in ("channel", "mean-image"):
        name = kind.replace("-", "_")
        train(TrainConfig(arch="cnn_deep", data=data, epochs=1, batch_size=32, device="cpu", progress=False,
                          aug="none", normalize=kind, out_dir=str(out), name=name, optimizer="adam", lr=3e-3))
        cks[kind] = str(out / name / "last.pt")
    return data, cks


def _split(data: str, split: str) -> np.ndarray:
    return np.load(f"{data}/{split}/images.npy").astype(np.float64) / 255.0


def _reference_probs(ck_path: str, data: str, mean, std, mean_image=None) -> torch.Tensor:
    """Softmax of the checkpoint's model on ``data``'s val images normalised by hand (float64)."""
    x = _split(data, "val")
    centre = np.asarray(mean_image, np.float64) if mean_image is not None else np.asarray(mean, np.float64)
    x = (x - centre) / np.asarray(std, np.float64)
    model = model_from_checkpoint(load_checkpoint(ck_path), "auto").float()
    with torch.no_grad():
        return model(torch.from_numpy(x).permute(0, 3, 1, 2).float()).softmax(1)


def _probs(cks: list[str], data: str | None = None) -> list[torch.Tensor]:
    from tinyfast.evaluate import ensemble_probs
    cfg = EvalConfig(checkpoints=tuple(cks), data=data, loader="gpu", device="cpu", batch_size=16, progress=False)
    return ensemble_probs(cfg, "val")[1]


def test_the_checkpoint_records_its_normalisation(runs):
    data, cks = runs
    train_images = _split(data, "train")
    norm = load_checkpoint(cks["mean-image"])["normalization"]
    assert norm["normalize"] == "mean-image"
    np.testing.assert_allclose(np.asarray(norm["mean_image"]), train_images.mean(0), atol=1e-6)
    norm = load_checkpoint(cks["channel"])["normalization"]
    assert norm["normalize"] == "channel" and norm["mean_image"] is None
    np.testing.assert_allclose(norm["mean"], train_images.mean((0, 1, 2)), atol=1e-3)


def test_each_member_of_an_ensemble_gets_its_own_normalisation(runs):
    data, cks = runs
    mean_image_probs, channel_probs = _probs([cks["mean-image"], cks["channel"]])
    ck = load_checkpoint(cks["channel"])
    ref = _reference_probs(cks["channel"], data, ck["mean"], ck["std"])
    torch.testing.assert_close(channel_probs, ref, atol=1e-4, rtol=0)
    ck = load_checkpoint(cks["mean-image"])
    ref = _reference_probs(cks["mean-image"], data, None, ck["std"], mean_image=ck["normalization"]["mean_image"])
    torch.testing.assert_close(mean_image_probs, ref, atol=1e-4, rtol=0)


@pytest.mark.parametrize("kind", ["channel", "mean-image"])
def test_other_data_is_normalised_as_the_checkpoint_was_trained(runs, tmp_path_factory, kind):
    """Evaluated on another set, a checkpoint gets its own run's mean/std or mean image, not the
    other set's (whose own statistics differ)."""
    data, cks = runs
    other = _pack(tmp_path_factory, "other", seed=5)
    ck = load_checkpoint(cks[kind])
    from tinyfast.data import open_packed
    assert not np.allclose(open_packed(other, "train").mean, ck["mean"], atol=1e-3)  # the data's own differ
    mean_image = ck["normalization"]["mean_image"]
    if kind == "mean-image":
        assert not np.allclose(_split(other, "train").mean(0), np.asarray(mean_image), atol=1e-2)
    (probs,) = _probs([cks[kind]], data=other)
    ref = _reference_probs(cks[kind], other, ck["mean"], ck["std"], mean_image=mean_image)
    torch.testing.assert_close(probs, ref, atol=1e-4, rtol=0)


@pytest.fixture(scope="module")
def data64(packed_synthetic):
    """The same 4 classes, packed at 64 px."""
    return packed_synthetic("norm64", classes=4, per_class=16, val_per_class=8, test_count=4, seed=3)


def _notes(capsys, argv) -> list[str]:
    from tinyfast.evaluate import main as evaluate_main
    assert evaluate_main(argv + ["--device", "cpu", "--no-progress"]) == 0
    return [ln for ln in capsys.readouterr().err.splitlines() if "note:" in ln]


def test_a_model_scored_at_another_size_than_it_trained_at_says_so(runs, data64, tmp_path_factory, capsys):
    """A model trained at 32 px (its data's size, or the last --prog-resize phase) scored on 64-px
    images: one note naming both sizes; at its own size, none."""
    data, cks = runs
    assert _notes(capsys, [cks["channel"]]) == []
    notes = _notes(capsys, [cks["channel"], "--data", data64])
    assert len(notes) == 1 and cks["channel"] in notes[0], notes
    assert "trained at 32 px" in notes[0] and "64 px images" in notes[0], notes[0]
    from tinyfast.predict import main as predict_main
    csv = str(tmp_path_factory.mktemp("pred") / "p.csv")
    assert predict_main([cks["channel"], "--data", data64, "--output", csv, "--device", "cpu", "--no-progress"]) == 0
    notes = [ln for ln in capsys.readouterr().err.splitlines() if "note:" in ln]
    assert len(notes) == 1 and "trained at 32 px" in notes[0] and "64 px images" in notes[0], notes
    out = tmp_path_factory.mktemp("prog")
    train(TrainConfig(arch="cnn_deep", data=data64, epochs=2, batch_size=32, device="cpu", progress=False,
                      prog_resize="64:32", out_dir=str(out), name="p"))
    ck = str(out / "p" / "last.pt")
    assert [h["image_size"] for h in load_checkpoint(ck)["history"]] == [64, 32]
    notes = _notes(capsys, [ck])
    assert len(notes) == 1 and "trained at 32 px (--prog-resize 64:32)" in notes[0], notes
    assert notes[0].count("\n") == 0 and "64 px images" in notes[0], notes[0]


def test_resuming_a_finished_run_keeps_the_summarys_class_lists(runs):
    _, cks = runs
    summary = cks["channel"].replace("last.pt", "summary.json")
    before = json.loads(open(summary).read())
    assert before["best_classes"] and before["worst_classes"]
    assert train_main(["--resume", cks["channel"], "--no-progress"]) == 0
    after = json.loads(open(summary).read())
    assert (after["best_classes"], after["worst_classes"]) == (before["best_classes"], before["worst_classes"])
