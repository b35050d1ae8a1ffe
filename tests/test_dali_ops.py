"""The DALI plugin operator (tinyfast.dali_ops.augment) against torch.ops.tinyfast.augment.

The plugin has no kernel of its own, so it must be bit-exact with the op on the same inputs: each
sample is compared with the op run on that sample alone (CPU backend here, the GPU backend on a
GPU). Errors must surface as DALI's errors carrying the operator's own message.
"""
from __future__ import annotations

import importlib
import importlib.util
import re
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("nvidia.dali", reason="needs the optional dali extra (pip install .[dali])")

from nvidia.dali import fn, pipeline_def  # noqa: E402

from tinyfast import dali_ops, ops  # noqa: E402
from tinyfast.augment import get_policy  # noqa: E402

needs_plugin = pytest.mark.skipif(not dali_ops.plugin_available(),
                                  reason="the DALI plugin is not built (python csrc/dali/build.py)")

MEAN, STD = (0.48, 0.45, 0.40), (0.28, 0.27, 0.29)
GPU = torch.cuda.is_available()


def run(images, theta, color, *, device="cpu", sizes=None, **kw):
    """One pipeline run of the plugin over the given per-sample inputs; per-sample NHWC outputs."""
    feed = [images, [t.numpy() for t in theta], [c.numpy() for c in color]]
    if sizes is not None:
        feed.append([np.array(s, np.int32) for s in sizes])

    @pipeline_def(batch_size=len(images), num_threads=2, device_id=0 if device == "gpu" else None)
    def pipe():
        ins = fn.external_source(source=lambda: tuple(feed), num_outputs=len(feed), batch=True)
        img = ins[0].gpu() if device == "gpu" else ins[0]
        size = ins[3] if sizes is not None else kw.pop("out_size", None)
        return dali_ops.augment(img, ins[1], ins[2], mean=MEAN, std=STD, out_size=size, **kw)

    p = pipe()
    p.build()
    (out,) = p.run()
    if device == "gpu":
        out = out.as_cpu()
    dtype = kw.get("dtype", torch.float16)
    res = [torch.from_numpy(np.array(out.at(i))) for i in range(len(images))]
    return [r.view(torch.bfloat16) if dtype == torch.bfloat16 else r for r in res], out


def op_reference(img, theta, color, dtype, out_size=None, fill=0.0, device="cpu"):
    src = torch.from_numpy(img)[None].to(device)
    y = ops.augment(src, theta[None], color[None], MEAN, STD, dtype=dtype, out_size=out_size, fill=fill)
    return y.permute(0, 2, 3, 1)[0].cpu()  # HWC


def draw(n, h, w, seed, policy="standard", out_size=None):
    return get_policy(policy).sample(n, h, w, torch.Generator().manual_seed(seed), out_size=out_size)


def rand_images(n, h, w, seed):
    return list(np.random.default_rng(seed).integers(0, 256, (n, h, w, 3), dtype=np.uint8))


@needs_plugin
@pytest.mark.parametrize("batch, size, dtype", [(1, 128, torch.float16), (5, 128, torch.bfloat16),
                                                (7, 64, torch.float32), (3, 37, torch.float16)])
def test_cpu_backend_bit_exact(batch, size, dtype):
    imgs = rand_images(batch, size, size, batch)
    theta, color = draw(batch, size, size, seed=size)
    got, _ = run(imgs, theta, color, dtype=dtype, fill=114.0)
    for i in range(batch):
        want = op_reference(imgs[i], theta[i], color[i], dtype, fill=114.0)
        assert got[i].dtype == dtype and torch.equal(got[i], want), f"sample {i} differs from the op"


@needs_plugin
def test_out_size_fixed_and_per_sample_and_mixed_sources():
    """Sources of different sizes in one batch; out_size as one pair or per sample."""
    shapes = [(128, 128), (64, 96), (31, 17)]
    imgs = [np.random.default_rng(i).integers(0, 256, (*s, 3), dtype=np.uint8) for i, s in enumerate(shapes)]
    params = [draw(1, h, w, seed=i, out_size=(40, 48)) for i, (h, w) in enumerate(shapes)]
    theta = torch.cat([p.theta for p in params])
    color = torch.cat([p.color for p in params])
    got, _ = run(imgs, theta, color, out_size=(40, 48))
    sizes = [(40, 48), (16, 16), (9, 70)]
    got2, _ = run(imgs, theta, color, sizes=sizes)
    for i in range(3):
        assert torch.equal(got[i], op_reference(imgs[i], theta[i], color[i], torch.float16, (40, 48)))
        assert torch.equal(got2[i], op_reference(imgs[i], theta[i], color[i], torch.float16, sizes[i]))


@needs_plugin
def test_identity_is_plain_normalisation():
    """Against a float64 formula, not the op: identity parameters only normalise."""
    imgs = rand_images(2, 128, 128, 0)
    theta, color = draw(2, 128, 128, seed=0, policy="none")
    got, out = run(imgs, theta, color, dtype=torch.float32)
    x = dali_ops.as_torch(out, torch.float32)
    assert x.shape == (2, 3, 128, 128) and x.is_contiguous(memory_format=torch.channels_last)
    m, s = (torch.tensor(v, dtype=torch.float32).double() for v in (MEAN, STD))
    for i in range(2):
        want = (torch.from_numpy(imgs[i]).double() / 255 - m) / s
        assert (got[i].double() - want).abs().max() < 1e-5


@needs_plugin
@pytest.mark.parametrize("change, msg", [
    (dict(theta_shape=(3, 2)), r"theta must be \(2, 3\) per sample"),
    (dict(theta_dtype=np.float64), "theta must be float32"),
    (dict(color_shape=(4,)), r"color must be \(3,\) per sample"),
    (dict(image_dtype=np.float32), "images must be uint8"),
    (dict(mean=(0.5, 0.5)), "mean must have 3 values"),
    (dict(std=(0.2, 0.0, 0.2)), "std non-zero"),
    (dict(fill=-1.0), r"fill must be in \[0, 255\]"),
    (dict(out_size=(0, 8)), "out_size must be positive"),
])
def test_bad_arguments_are_dalis_error_with_our_message(change, msg):
    img = np.zeros((8, 8, 3), change.pop("image_dtype", np.uint8))
    theta = np.zeros(change.pop("theta_shape", (2, 3)), change.pop("theta_dtype", np.float32))
    color = np.ones(change.pop("color_shape", (3,)), np.float32)
    kw = dict(mean=MEAN, std=STD) | change

    @pipeline_def(batch_size=2, num_threads=1, device_id=None)
    def pipe():
        i, t, c = fn.external_source(source=lambda: ([img] * 2, [theta] * 2, [color] * 2),
                                     num_outputs=3, batch=True)
        return dali_ops.augment(i, t, c, **kw)

    with pytest.raises(RuntimeError, match=f"tinyfast.dali_ops.augment: .*{msg}"):
        p = pipe()
        p.build()
        p.run()


def _dali_types():
    from nvidia.dali import types
    return types


@needs_plugin
@pytest.mark.parametrize("want, spellings", [
    (torch.float16, ["float16", np.float16, np.dtype("float16"), lambda: _dali_types().FLOAT16]),
    (torch.float32, ["float32", np.float32, np.dtype("float32"), lambda: _dali_types().FLOAT]),
    (torch.bfloat16, ["bfloat16"]),
])
def test_dtype_spellings_of_dali_numpy_torch_and_strings_give_the_same_output(want, spellings):
    """DALI users write types.FLOAT / types.FLOAT16 (as fn.cast takes them); numpy users np.float16;
    each spelling of one dtype gives the op's output of that torch dtype, bit for bit."""
    imgs = rand_images(2, 24, 24, 3)
    theta, color = draw(2, 24, 24, seed=3)
    ref = [op_reference(imgs[i], theta[i], color[i], want) for i in range(2)]
    bf16 = getattr(_dali_types(), "BFLOAT16", None)
    if want == torch.bfloat16 and bf16 is not None:
        spellings = spellings + [bf16]
    for spelling in [want] + spellings:
        spelling = spelling() if callable(spelling) and not isinstance(spelling, type) else spelling
        _, out = run(imgs, theta, color, dtype=spelling)
        got = dali_ops.as_torch(out, spelling)
        assert got.dtype == want, spelling
        for i in range(2):
            assert torch.equal(got[i].permute(1, 2, 0), ref[i]), f"{spelling!r}: sample {i} differs"


@pytest.mark.parametrize("bad", ["int8", "float", torch.float64, np.float64, np.int8,
                                 lambda: _dali_types().UINT8, lambda: _dali_types().FLOAT64, None, 3])
def test_an_unknown_dtype_is_one_error_naming_dtype_and_the_accepted_values(bad):
    bad = bad() if callable(bad) and not isinstance(bad, type) else bad
    with pytest.raises(ValueError) as e:
        dali_ops.augment(None, None, None, mean=MEAN, std=STD, dtype=bad)
    msg = str(e.value)
    assert msg.startswith("tinyfast.dali_ops.augment: dtype must be float16, bfloat16 or float32"), msg
    assert "types.FLOAT16" in msg and repr(bad) in msg and "\n" not in msg
    with pytest.raises(ValueError, match="dtype must be float16"):
        dali_ops.as_torch(None, bad)


@needs_plugin
@pytest.mark.parametrize("name", ["theta", "color"])
def test_non_finite_host_parameters_are_refused_as_the_op_refuses_them(name):
    """The op's rule: non-finite host parameters are an error naming the sample, not a fill image."""
    imgs = rand_images(3, 16, 16, 1)
    theta, color = draw(3, 16, 16, seed=1)
    bad = (theta if name == "theta" else color).clone()
    bad[1].view(-1)[0] = float("nan")
    args = (bad, color) if name == "theta" else (theta, bad)
    with pytest.raises(ValueError) as want:
        ops.augment(torch.from_numpy(np.stack(imgs)), *args, MEAN, STD)
    rule = str(want.value).removeprefix("tinyfast.ops.augment: ")
    assert rule.startswith(f"{name}[1] has a non-finite value"), rule
    with pytest.raises(RuntimeError, match=re.escape(f"tinyfast.dali_ops.augment: {rule}")):
        run(imgs, *args)


def test_without_dali_the_import_names_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "nvidia.dali", None)
    monkeypatch.delitem(sys.modules, "tinyfast.dali_ops")
    with pytest.raises(ImportError, match=re.escape("pip install 'tinyfast[dali]'")):
        importlib.import_module("tinyfast.dali_ops")
    monkeypatch.undo()
    importlib.import_module("tinyfast.dali_ops")


# ----------------------------------------------------------------------------------- the loader
@pytest.fixture(scope="module")
def packed(tmp_path_factory):
    from tinyfast.pack import pack_synthetic

    base = tmp_path_factory.mktemp("dali_ops")
    out = base / "packed"
    pack_synthetic(out, classes=3, per_class=7, val_per_class=2, test_count=0, tree=base / "tree",
                   jpeg_shards=True, progress=False, workers=1, log=None)
    return out


@needs_plugin
@pytest.mark.parametrize("source", ["pixels", "jpeg"])
def test_dali_loader_augments_in_the_pipeline_like_the_gpu_loader(packed, source):
    import tinyfast.loaders as L

    kw = dict(train=True, policy="standard", seed=9, num_workers=1, dtype=torch.bfloat16)
    dali = L.build("dali", packed, "train", 5, plugin=True, source=source, **kw)
    # The reference: the gpu loader for raw pixels; for JPEG (decoded by DALI, not as packed) the
    # same pipeline with the op applied to its output instead.
    gpu = (L.build("gpu", packed, "train", 5, **kw) if source == "pixels" else
           L.build("dali", packed, "train", 5, plugin=False, source=source, **kw))
    assert dali.in_pipeline and not getattr(gpu, "in_pipeline", False)
    for ld in (dali, gpu):
        ld.set_out_size((48, 40))
    for epoch in (0, 1):
        dali.set_epoch(epoch)
        gpu.set_epoch(epoch)
        a = [(x.clone(), y.clone()) for x, y in dali]
        b = [(x.clone(), y.clone()) for x, y in gpu]
        assert len(a) == len(b) == 4
        for (xa, ya), (xb, yb) in zip(a, b):
            assert xa.shape == (5, 3, 48, 40) and xa.is_contiguous(memory_format=torch.channels_last)
            assert torch.equal(xa, xb) and torch.equal(ya, yb)


@pytest.mark.parametrize("plugin, builds", [pytest.param(True, 2, marks=needs_plugin), (False, 1)])
def test_dali_loader_rebuilds_its_pipeline_only_for_a_size_change_mid_pass(packed, plugin, builds):
    """A size set between passes reuses the pipeline (reset); one set mid-pass rebuilds it once
    with the plugin (its prefetched batches are at the old size), never without it (the op then
    runs after the pipeline). Either way the next batch is the ``gpu`` loader's at the new size."""
    import tinyfast.loaders as L

    kw = dict(train=True, policy="standard", seed=4, num_workers=1)
    ld = L.build("dali", packed, "train", 5, plugin=plugin, **kw)
    ref = L.build("gpu", packed, "train", 5, **kw)
    built = []
    build = ld._build
    ld._build = lambda: built.append(1) or build()
    ld.set_out_size((48, 40))
    assert [x.shape[-2:] for x, _ in ld] == [(48, 40)] * 4 and len(built) == 1
    ld.set_out_size((32, 32))
    ld.set_epoch(1)
    it = iter(ld)
    assert next(it)[0].shape[-2:] == (32, 32) and len(built) == 1
    ld.set_out_size((40, 24))
    ref.load_state_dict(ld.state_dict())
    ref.set_out_size((40, 24))
    assert all(torch.equal(a[0], b[0]) for a, b in zip(it, ref))
    assert len(built) == builds


@needs_plugin
@pytest.mark.cuda
@pytest.mark.skipif(not GPU, reason="needs a CUDA GPU")
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_gpu_backend_bit_exact_with_the_cuda_op(dtype):
    imgs = rand_images(9, 128, 128, 1)
    theta, color = draw(9, 128, 128, seed=1)
    got, _ = run(imgs, theta, color, device="gpu", dtype=dtype, fill=7.0)
    for i in range(9):
        want = op_reference(imgs[i], theta[i], color[i], dtype, fill=7.0, device="cuda")
        assert torch.equal(got[i], want), f"sample {i} differs from the CUDA op"


@needs_plugin
@pytest.mark.cuda
@pytest.mark.skipif(not GPU, reason="needs a CUDA GPU")
def test_gpu_backend_mixed_sizes_one_launch_per_run():
    """Sources and outputs of different sizes: the GPU backend cannot merge them into one launch, and
    the samples after a 31x17 source (1,581 bytes) or a 9x70 float16 output (3,780 bytes) start off
    16-byte alignment (byte staging, element-wise stores); each sample equals the CUDA op's bits."""
    shapes = [(128, 128), (31, 17), (64, 96), (64, 96), (13, 10)]
    sizes = [(40, 48), (9, 70), (16, 16), (16, 16), (33, 5)]
    imgs = [np.random.default_rng(i).integers(0, 256, (*s, 3), dtype=np.uint8) for i, s in enumerate(shapes)]
    params = [draw(1, h, w, seed=i, out_size=o) for i, ((h, w), o) in enumerate(zip(shapes, sizes))]
    theta = torch.cat([p.theta for p in params])
    color = torch.cat([p.color for p in params])
    got, _ = run(imgs, theta, color, device="gpu", sizes=sizes, fill=3.0)
    for i in range(len(imgs)):
        want = op_reference(imgs[i], theta[i], color[i], torch.float16, sizes[i], fill=3.0, device="cuda")
        assert torch.equal(got[i], want), f"sample {i} differs from the CUDA op"


# ----------------------------------------------------------------------------------- the build
def _build_module():
    spec = importlib.util.spec_from_file_location(
        "tinyfast_dali_build", Path(__file__).resolve().parents[1] / "csrc" / "dali" / "build.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_build_says_what_is_missing(monkeypatch, capsys):
    build = _build_module()
    monkeypatch.setitem(sys.modules, "nvidia.dali.sysconfig", None)
    assert build.main([]) == 2
    assert "NVIDIA DALI is not installed" in capsys.readouterr().err


def test_missing_plugin_names_the_build_command(monkeypatch, tmp_path):
    monkeypatch.setattr(dali_ops, "PLUGIN", tmp_path / "libtinyfast_dali.so")
    monkeypatch.setattr(dali_ops, "_LOADED", False)
    assert not dali_ops.plugin_available()
    with pytest.raises(RuntimeError, match=re.escape("python csrc/dali/build.py")):
        dali_ops.load_plugin()
