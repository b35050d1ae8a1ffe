"""tinyfast.augment: seeded parameter draws, ranges, presets, and the geometry they encode."""
import math

import pytest
import torch

from tinyfast.augment import PRESETS, AugParams, Policy, affine_theta, get_policy, sample

IDENT = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def test_same_seed_same_params_different_seed_different():
    pol = PRESETS["standard"]
    a, b = pol.sample(64, 64, 64, gen(1)), pol.sample(64, 64, 64, gen(1))
    assert torch.equal(a.theta, b.theta) and torch.equal(a.color, b.color)
    c = pol.sample(64, 64, 64, gen(2))
    assert not torch.equal(a.theta, c.theta)


def test_params_shape_dtype_device():
    p = sample("standard", 5, 64, 48, gen())
    assert isinstance(p, AugParams)
    assert p.theta.shape == (5, 2, 3) and p.theta.dtype == torch.float32 and p.theta.device.type == "cpu"
    assert p.color.shape == (5, 3) and p.color.dtype == torch.float32


def test_identity_policy_gives_identity_params():
    p = Policy().sample(7, 64, 64, gen())
    assert torch.equal(p.theta, IDENT.expand(7, 2, 3))
    assert torch.equal(p.color, torch.ones(7, 3))
    assert Policy().is_identity and get_policy(None).is_identity and get_policy("none").is_identity
    assert not PRESETS["standard"].is_identity


def test_identity_policy_with_other_out_size_is_a_centred_resize():
    p = Policy().sample(1, 64, 32, gen(), out_size=(32, 16))
    # align_corners=False resize: src = (x + 0.5) * W / Wo - 0.5
    torch.testing.assert_close(p.theta[0], torch.tensor([[2.0, 0.0, 0.5], [0.0, 2.0, 0.5]]))


def test_unrelated_ranges_do_not_shift_other_draws():
    a = Policy(rotate=10).sample(32, 64, 64, gen(3))
    b = Policy(rotate=10, brightness=(0.5, 1.5), hflip=0.0).sample(32, 64, 64, gen(3))
    assert torch.equal(a.theta, b.theta)


def _decompose(theta):
    """Inverse 2x2 part -> (angle deg, scale) for a rotation+uniform zoom (no shear/flip)."""
    m = theta[:, :, :2].double()
    scale = 1.0 / torch.sqrt(torch.linalg.det(m))
    angle = torch.rad2deg(torch.atan2(m[:, 1, 0], m[:, 0, 0]))
    return angle, scale


def test_ranges_respected():
    n = 4000
    pol = Policy(rotate=(-5.0, 20.0), zoom=(0.8, 1.25), translate=(0.1, 0.2), brightness=(0.6, 1.1),
                 contrast=0.3, saturation=(0.0, 2.0))
    p = pol.sample(n, 64, 32, gen(5))
    angle, scale = _decompose(p.theta)
    assert angle.min() >= -5 - 1e-3 and angle.max() <= 20 + 1e-3
    assert angle.min() < -4 and angle.max() > 19  # the range is actually covered
    assert scale.min() >= 0.8 - 1e-4 and scale.max() <= 1.25 + 1e-4
    # The output pixel that lands on the source centre is the output centre plus the shift.
    m, off = p.theta[:, :, :2].double(), p.theta[:, :, 2].double()
    c_in = torch.tensor([(32 - 1) / 2, (64 - 1) / 2], dtype=torch.float64)
    hit = torch.linalg.solve(m, (c_in - off).unsqueeze(-1)).squeeze(-1) - c_in
    assert hit[:, 0].abs().max() <= 0.1 * 32 + 1e-3 and hit[:, 1].abs().max() <= 0.2 * 64 + 1e-3
    assert hit[:, 0].abs().max() > 0.09 * 32
    lo = torch.tensor([0.6, 0.7, 0.0])
    hi = torch.tensor([1.1, 1.3, 2.0])
    assert (p.color >= lo).all() and (p.color <= hi).all()
    assert (p.color.min(0).values < lo + 0.01).all() and (p.color.max(0).values > hi - 0.01).all()


@pytest.mark.parametrize("prob", [0.0, 0.3, 1.0])
def test_flip_probability(prob):
    n = 4000
    p = Policy(hflip=prob).sample(n, 16, 16, gen(9))
    frac = float((p.theta[:, 0, 0] < 0).double().mean())
    assert abs(frac - prob) < 4 * math.sqrt(prob * (1 - prob) / n) + 1e-9
    assert (p.theta[:, 1, 1] > 0).all()


def test_presets_cover_the_reference_recipes():
    for name in ["none", "hflip", "vflip", "rotate10", "rotate60-zoom-shift", "translate10", "contrast",
                 "standard", "default"]:
        assert name in PRESETS
    assert PRESETS["rotate10"].rotate == (-10.0, 10.0)
    r60 = PRESETS["rotate60-zoom-shift"]
    assert r60.rotate == (-60.0, 60.0) and r60.zoom[1] == pytest.approx(1.2) and r60.translate[0] > 0
    assert PRESETS["translate10"].translate == (0.1, 0.1)
    assert PRESETS["contrast"].contrast == (0.7, 1.3)
    assert PRESETS["hflip"].hflip == 0.5 and PRESETS["vflip"].vflip > 0
    assert PRESETS["default"] == PRESETS["standard"] and PRESETS["standard"].hflip == 0.5
    for name, pol in PRESETS.items():
        p = pol.sample(8, 64, 64, gen())
        assert torch.isfinite(p.theta).all() and torch.isfinite(p.color).all(), name


def test_bad_policies_and_names():
    with pytest.raises(ValueError, match="hflip"):
        Policy(hflip=1.5)
    with pytest.raises(ValueError, match="zoom"):
        Policy(zoom=(0.0, 1.0))
    with pytest.raises(ValueError, match="rotate"):
        Policy(rotate=(10, -10))
    with pytest.raises(ValueError, match="fill"):
        Policy(fill=-1)
    with pytest.raises(ValueError, match="standard"):
        get_policy("no-such-policy")
    with pytest.raises(ValueError, match="batch"):
        Policy().sample(0, 8, 8, gen())


def test_colour_shorthand_matches_colorjitter():
    assert Policy(brightness=0.4).brightness == (0.6, 1.4)
    assert Policy(contrast=1.5).contrast == (0.0, 2.5)


# --- the geometry the parameters encode, checked through the op --------------------------------
ops = pytest.importorskip("tinyfast.ops")
needs_op = pytest.mark.skipif(not ops.is_built(), reason="tinyfast._C is not built")
MEAN, STD = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)


def _run(src, params, device="cpu", **kw):
    return ops.augment(src.to(device), params.theta, params.color, MEAN, STD, dtype=torch.float32, **kw).cpu()


@needs_op
def test_rotate_90_is_counter_clockwise_rot90():
    src = torch.randint(0, 256, (2, 9, 9, 3), dtype=torch.uint8, generator=gen(1))
    p = Policy(rotate=(90.0, 90.0)).sample(2, 9, 9, gen())
    want = _run(torch.rot90(src, 1, dims=(1, 2)).contiguous(), Policy().sample(2, 9, 9, gen()))
    assert torch.equal(_run(src, p), want)


@needs_op
def test_hflip_vflip_policies_flip():
    src = torch.randint(0, 256, (2, 6, 10, 3), dtype=torch.uint8, generator=gen(2))
    ident = Policy().sample(2, 6, 10, gen())
    assert torch.equal(_run(src, Policy(hflip=1.0).sample(2, 6, 10, gen())), _run(src.flip(2), ident))
    assert torch.equal(_run(src, Policy(vflip=1.0).sample(2, 6, 10, gen())), _run(src.flip(1), ident))


@needs_op
def test_zoom_two_magnifies_about_the_centre():
    # Source value = column index, so the output shows which columns were sampled.
    w = 16
    src = torch.arange(w, dtype=torch.uint8)[None, None, :, None].expand(1, 4, w, 3).contiguous() * 10
    out = _run(src, Policy(zoom=(2.0, 2.0)).sample(1, 4, w, gen()))
    cols = (out[0, 0, 1] * STD[0] + MEAN[0]) * 255 / 10
    expect = (torch.arange(w) - (w - 1) / 2) / 2 + (w - 1) / 2
    torch.testing.assert_close(cols, expect.float(), rtol=0, atol=1e-4)


def test_affine_theta_broadcasts():
    th = affine_theta(torch.tensor([0.0, 90.0]), (0.0, 0.0), 1.0, 0.0, False, torch.tensor([False, True]),
                      in_size=(8, 8))
    assert th.shape == (2, 2, 3)
    assert torch.equal(th[0], IDENT)


@pytest.mark.cuda
@needs_op
def test_same_seed_same_images_on_cpu_and_cuda():
    if "cuda" not in ops.available_backends():
        pytest.skip("CUDA kernels not compiled")
    src = torch.randint(0, 256, (16, 64, 64, 3), dtype=torch.uint8, generator=gen(4))
    p = PRESETS["standard"].sample(16, 64, 64, gen(7))
    a = _run(src, p, fill=PRESETS["standard"].fill)
    b = _run(src, p, "cuda", fill=PRESETS["standard"].fill)
    torch.testing.assert_close(a, b, rtol=1e-4, atol=2e-4)


# --- the reports' presets ---------------------------------------------------------------------------
def test_report_presets_ranges():
    ucsc = PRESETS["ucsc"]
    assert ucsc.rotate == (-8.0, 8.0) and ucsc.translate == (0.1, 0.1)
    assert ucsc.shear == (-0.3, 0.3)  # degrees, as tf.keras 2.x reads shear_range=0.3
    assert ucsc.zoom == pytest.approx((1 / 1.1, 1 / 0.9)) and ucsc.hflip == ucsc.vflip == 0.5
    assert PRESETS["uci"] == Policy(rotate=10.0, translate=0.1, hflip=0.5)
    assert PRESETS["crop56"].zoom == (64 / 56, 64 / 56) and PRESETS["hflip-crop56"].hflip == 0.5


def test_rotate10_flips_draws_both_flips_independently_with_rotation():
    n = 8000
    p = PRESETS["rotate10-flips"].sample(n, 64, 64, gen(11))
    # With |angle| <= 10 degrees the diagonal keeps the flips' signs (cos > 0.98).
    h, v = p.theta[:, 0, 0] < 0, p.theta[:, 1, 1] < 0
    tol = 4 * math.sqrt(0.25 / n)
    assert abs(h.double().mean() - 0.5) < tol and abs(v.double().mean() - 0.5) < tol
    assert abs((h & v).double().mean() - 0.25) < tol
    flips = torch.diag_embed(torch.stack([torch.where(h, -1.0, 1.0), torch.where(v, -1.0, 1.0)], 1))
    rot = flips @ p.theta[:, :, :2]   # un-flip: a pure rotation remains (F is its own inverse)
    angle = torch.rad2deg(torch.atan2(rot[:, 1, 0], rot[:, 0, 0]))
    torch.testing.assert_close(rot[:, 0, 0], rot[:, 1, 1], rtol=0, atol=1e-6)
    assert angle.abs().max() <= 10 + 1e-3 and angle.abs().max() > 9.5


@needs_op
def test_crop56_is_a_centre_crop_resized_to_64():
    """Against F.interpolate (bilinear, align_corners=False) of the 56x56 centre crop. The op reads
    the real neighbours just outside the crop where the crop-then-resize clamps at the crop edge,
    so the outermost ring of pixels is excluded."""
    import torch.nn.functional as F
    src = torch.randint(0, 256, (3, 64, 64, 3), dtype=torch.uint8, generator=gen(6))
    out = _run(src, PRESETS["crop56"].sample(3, 64, 64, gen()))
    crop = src[:, 4:60, 4:60].permute(0, 3, 1, 2).double()
    ref = F.interpolate(crop, size=(64, 64), mode="bilinear", align_corners=False)
    ref = (ref / 255 - MEAN[0]) / STD[0]
    torch.testing.assert_close(out[:, :, 1:63, 1:63].double(), ref[:, :, 1:63, 1:63], rtol=0, atol=1e-4)
