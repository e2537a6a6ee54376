"""Image-quality metrics: FD closed forms, floors and power, k-NN metrics on constructed cases,
the shipped digits extractor (its accuracy recomputed), the Inception path on a random network,
and the one-line refusals of bad input."""

from __future__ import annotations

import io
import re
import zipfile
from pathlib import Path

import numpy as np
import pytest
import scipy.linalg
import torch
from torch import nn

from sde_diffusion.data import DigitsDataset
from sde_diffusion.metrics import (
    FeatureStatistics,
    class_histogram,
    classifier_score,
    density_coverage,
    digits_features,
    extract_features,
    feature_floor,
    feature_statistics,
    frechet_distance,
    kid,
    load_statistics,
    precision_recall,
    save_statistics,
    weights_digest,
)
from sde_diffusion.metrics.digits_features import _default_path, load_digits_cnn

README = Path(__file__).resolve().parents[1] / "README.md"


def stats(mean, cov, n=10_000, digest="x") -> FeatureStatistics:
    return FeatureStatistics(np.asarray(mean, float), np.asarray(cov, float), n, digest)


def one_line(excinfo) -> str:
    msg = str(excinfo.value)
    assert "\n" not in msg and msg
    return msg


def fd_of(digest: str):
    return lambda a, b: frechet_distance(
        feature_statistics(a, digest), feature_statistics(b, digest)
    )


@pytest.fixture(scope="module")
def digits():
    """The shipped extractor, its digest, and features/logits of both splits."""
    net, digest = digits_features()
    train, test = DigitsDataset("train"), DigitsDataset("test")
    return {
        "net": net,
        "digest": digest,
        "train": extract_features(net, train.data).numpy(),
        "test": extract_features(net, test.data).numpy(),
        "test_images": test.data,
        "test_labels": test.labels,
        "train_labels": train.labels,
    }


# ------------------------------------------------------------------ Frechet distance
def test_fd_closed_forms():
    # 1-D: (mu_1 - mu_2)^2 + (s_1 - s_2)^2
    assert frechet_distance(stats([1.0], [[4.0]]), stats([3.0], [[9.0]])) == pytest.approx(5.0)
    # commuting (diagonal): |dmu|^2 + sum (sqrt a - sqrt b)^2
    rng = np.random.default_rng(0)
    a, b = rng.uniform(0.1, 3, 7), rng.uniform(0.1, 3, 7)
    m1, m2 = rng.normal(size=7), rng.normal(size=7)
    want = ((m1 - m2) ** 2).sum() + ((np.sqrt(a) - np.sqrt(b)) ** 2).sum()
    got = frechet_distance(stats(m1, np.diag(a)), stats(m2, np.diag(b)))
    assert got == pytest.approx(want, rel=1e-12)
    # general SPD pair: tr((S1 S2)^(1/2)) from scipy's sqrtm, imaginary residue negligible
    g1, g2 = rng.normal(size=(6, 6)), rng.normal(size=(6, 6))
    s1, s2 = g1 @ g1.T + 0.1 * np.eye(6), g2 @ g2.T + 0.1 * np.eye(6)
    root = scipy.linalg.sqrtm(s1 @ s2)
    assert np.abs(np.imag(root)).max() < 1e-8
    want = ((m1[:6] - m2[:6]) ** 2).sum() + np.trace(s1 + s2 - 2 * np.real(root))
    got = frechet_distance(stats(m1[:6], s1), stats(m2[:6], s2))
    assert got == pytest.approx(want, rel=1e-10)
    assert frechet_distance(stats(m2[:6], s2), stats(m1[:6], s1)) == pytest.approx(got, rel=1e-10)


def test_fd_is_zero_for_equal_singular_statistics():
    """A rank-deficient covariance (dead feature units) against itself: 0, not a NaN."""
    g = np.random.default_rng(1).normal(size=(20, 3))
    s = g @ g.T  # rank 3 in 20-D
    assert abs(frechet_distance(stats(np.zeros(20), s), stats(np.zeros(20), s))) < 1e-9


def test_fd_and_kid_near_floor_for_same_law_and_above_for_shifted():
    rng = np.random.default_rng(2)
    d, n = 16, 500
    pool = rng.normal(size=(4000, d))
    fd = fd_of("gauss")
    floor = feature_floor(fd, pool, n, repeats=10)
    same = fd(rng.normal(size=(n, d)), rng.normal(size=(n, d)))
    shifted = fd(rng.normal(size=(n, d)), rng.normal(size=(n, d)) + 0.3)
    assert 0.2 < floor.mean < 0.6  # biased: two exact draws of N(0, I_16) at n = 500
    assert same < floor.mean + 4 * floor.std
    assert shifted > floor.mean + 10 * floor.std
    assert shifted == pytest.approx(16 * 0.3**2 + floor.mean, abs=0.3)  # |dmu|^2 + the bias

    k = lambda a, b: kid(a, b, subsets=10).mean  # noqa: E731
    kfloor = feature_floor(k, pool, n, repeats=10)
    assert abs(kfloor.mean) < 3 * kfloor.std
    assert abs(k(rng.normal(size=(n, d)), rng.normal(size=(n, d)))) < 5 * kfloor.std
    assert k(rng.normal(size=(n, d)), rng.normal(size=(n, d)) + 0.3) > 10 * kfloor.std


def test_kid_matches_a_direct_unbiased_estimate():
    rng = np.random.default_rng(3)
    x, y = rng.normal(size=(40, 5)), rng.normal(size=(30, 5)) + 0.5
    kern = lambda a, b: (a @ b.T / 5 + 1) ** 3  # noqa: E731
    kxx, kyy = kern(x, x), kern(y, y)
    want = (
        (kxx.sum() - np.trace(kxx)) / (40 * 39)
        + (kyy.sum() - np.trace(kyy)) / (30 * 29)
        - 2 * kern(x, y).mean()
    )
    r = kid(x, y, subsets=3, subset_size=30)
    # y is used whole in every subset; x's subsets differ, so only the mean of many is close
    assert r.subset_size == 30 and r.std > 0
    full = kid(x[:30], y, subsets=2, subset_size=30)
    assert full.std == pytest.approx(0, abs=1e-12)  # whole sets: every subset is the same
    kxx = kern(x[:30], x[:30])
    want = (
        (kxx.sum() - np.trace(kxx)) / (30 * 29)
        + (kyy.sum() - np.trace(kyy)) / (30 * 29)
        - 2 * kern(x[:30], y).mean()
    )
    assert full.mean == pytest.approx(want, rel=1e-12)


# ------------------------------------------------------------------ k-NN metrics
def test_precision_recall_constructed_cases():
    rng = np.random.default_rng(4)
    real = rng.normal(size=(1000, 8))
    same = precision_recall(real, rng.normal(size=(1000, 8)))
    assert same.precision > 0.85 and same.recall > 0.85
    subset = real[real[:, 0] > 0.5]  # a part of the real support: no outliers, missing mass
    pr = precision_recall(real, subset)
    assert pr.precision > 0.97 and pr.recall < 0.7
    far = precision_recall(real, rng.normal(size=(1000, 8)) + 3.0)
    assert far.precision < 0.05 and far.recall < 0.05


def test_density_coverage_sanity():
    rng = np.random.default_rng(5)
    real = rng.normal(size=(1000, 8))
    same = density_coverage(real, rng.normal(size=(1000, 8)))
    assert 0.8 < same.density < 1.2 and same.coverage > 0.9
    collapsed = density_coverage(real, 0.2 * rng.normal(size=(1000, 8)))  # one dense mode
    assert collapsed.density > 2 and collapsed.coverage < 0.3
    far = density_coverage(real, rng.normal(size=(1000, 8)) + 3.0)
    assert far.density < 0.05 and far.coverage < 0.05
    exact = density_coverage(real, real)
    assert exact.coverage == 1.0


# ------------------------------------------------------------------ the digits extractor
def test_digits_extractor_loads_and_its_accuracy_is_recomputed(digits):
    net, meta = load_digits_cnn()
    assert meta["digest"] == digits["digest"] == weights_digest(net)
    assert _default_path().stat().st_size < 400_000
    with torch.no_grad():
        pred = net.logits(digits["test_images"]).argmax(1)
    correct = int((pred == digits["test_labels"]).sum())
    n = len(digits["test_labels"])
    assert n == meta["n_test"] == 359
    assert correct / n == meta["test_accuracy"] >= 0.97
    text = README.read_text()
    assert f"{100 * correct / n:.2f} %" in text and f"{correct} of {n}" in text
    assert digits["digest"][:16] in text
    assert digits["train"].shape[1] == 64


def test_digits_metrics_at_floor_for_held_out_data_and_above_for_shifted_images(digits):
    """Train-split draws against the test split sit within the floor (two draws from the pool of
    both splits); the test images moved one pixel to the right do not."""
    pool = np.concatenate([digits["train"], digits["test"]])
    n, fd = 359, fd_of(digits["digest"])
    rng = np.random.default_rng(6)
    sub = digits["train"][rng.permutation(len(digits["train"]))[:n]]
    moved = torch.roll(digits["test_images"], 1, dims=3)
    moved[..., 0] = -1.0
    fm = extract_features(digits["net"], moved).numpy()
    floor = feature_floor(fd, pool, n, repeats=10)
    assert fd(sub, digits["test"]) < floor.mean + 4 * floor.std
    assert fd(sub, fm) > floor.mean + 6 * floor.std
    k = lambda a, b: kid(a, b, subsets=10).mean  # noqa: E731
    kfloor = feature_floor(k, pool, n, repeats=6)
    assert k(sub, digits["test"]) < 4 * kfloor.std
    assert k(sub, fm) > 3 * kfloor.std  # 0.035 against a spread of 0.008 at n = 359


def test_classifier_score_on_digits(digits):
    net = digits["net"]
    with torch.no_grad():
        logits = net.logits(digits["test_images"])
    score = classifier_score(logits, digits["train_labels"])
    assert score.confidence > 0.95 and sum(score.histogram) == pytest.approx(1)
    train_logits = net.logits(DigitsDataset("train").data).detach()
    floor = feature_floor(lambda a, b: classifier_score(a, b).tv, train_logits, 359, repeats=6)
    assert score.tv < floor.mean + 4 * floor.std
    threes = logits[digits["test_labels"] == 3]  # every sample one class
    one = classifier_score(threes, class_histogram(digits["train_labels"], 10))
    assert one.tv > 0.8


# ------------------------------------------------------------------ statistics and their cache
def test_statistics_cache_roundtrip_and_refusals(tmp_path, digits):
    s = feature_statistics(digits["test"], digits["digest"])
    path = save_statistics(tmp_path / "ref.npz", s)
    back = load_statistics(path, digits["digest"])
    assert back.n == 359 and back.extractor == digits["digest"]
    np.testing.assert_array_equal(back.cov, s.cov)
    assert frechet_distance(s, back) == pytest.approx(0, abs=1e-9)
    with pytest.raises(ValueError, match="made by extractor") as e:
        load_statistics(path, "0" * 64)
    one_line(e)
    other = FeatureStatistics(s.mean, s.cov, s.n, "0" * 64)
    with pytest.raises(ValueError, match="different feature extractors") as e:
        frechet_distance(s, other)
    one_line(e)
    (tmp_path / "bad.npz").write_bytes(b"not an archive")
    with pytest.raises(ValueError, match="corrupt") as e:
        load_statistics(tmp_path / "bad.npz")
    one_line(e)
    with pytest.raises(ValueError, match="no such file") as e:
        load_statistics(tmp_path / "none.npz")
    one_line(e)


def test_bad_input_one_line_errors(digits):
    net = digits["net"]
    with pytest.raises(ValueError, match=r"needs n > 64 samples") as e:
        feature_statistics(digits["test"][:64], digits["digest"])
    one_line(e)
    for bad, what in [
        (torch.zeros(3, 1, 28, 28), r"shape \(n, 1, 8, 8\)"),
        (torch.zeros(3, 8, 8), r"shape \(n, 1, 8, 8\)"),
        (torch.full((3, 1, 8, 8), 16.0), r"in \[-1, 1\]"),
        (torch.zeros(3, 1, 8, 8, dtype=torch.long), "floating-point"),
    ]:
        with pytest.raises(ValueError, match=what) as e:
            net(bad)
        one_line(e)
    with pytest.raises(ValueError, match="subset_size") as e:
        kid(digits["test"][:10], digits["test"][:20], subset_size=11)
    one_line(e)
    with pytest.raises(ValueError, match="more than 5 samples") as e:
        precision_recall(digits["test"][:5], digits["test"])
    one_line(e)


def test_digits_weights_file_integrity(tmp_path):
    with pytest.raises(ValueError, match="no such file") as e:
        digits_features(tmp_path / "none.pt")
    one_line(e)
    raw = _default_path().read_bytes()
    flipped = bytearray(raw)
    with zipfile.ZipFile(io.BytesIO(raw)) as z:
        info = max(z.infolist(), key=lambda i: i.file_size)
    flipped[info.header_offset + 30 + len(info.filename) + len(info.extra) + 100] ^= 0xFF
    (tmp_path / "flipped.pt").write_bytes(bytes(flipped))
    with pytest.raises(ValueError, match="corrupt") as e:
        digits_features(tmp_path / "flipped.pt")
    one_line(e)
    blob = torch.load(_default_path(), weights_only=True)
    blob["state_dict"]["head.1.bias"] += 1.0  # a valid archive, altered weights
    torch.save(blob, tmp_path / "altered.pt")
    with pytest.raises(ValueError, match="recorded digest") as e:
        digits_features(tmp_path / "altered.pt")
    one_line(e)


def test_extract_features_is_batch_independent(digits):
    x = digits["test_images"][:50]
    a = extract_features(digits["net"], x, batch_size=7)
    b = extract_features(digits["net"], x, batch_size=500)
    torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)


# ------------------------------------------------------------------ the Inception path
def _random_inception(tmp_path: Path):
    """torch-fidelity's Inception-v3 with random weights (He-normal convolutions, so the pool
    features stay O(1)), saved as a state dict the way the published weights are."""
    fidelity = pytest.importorskip("torch_fidelity.feature_extractor_inceptionv3")

    class Random(fidelity.FeatureExtractorInceptionV3):
        def load_state_dict(self, state_dict, strict=True, assign=False):
            return None  # keep the random initialisation

    empty = io.BytesIO()
    torch.save({}, empty)
    empty.seek(0)
    torch.manual_seed(0)
    net = Random("random", ["2048"], feature_extractor_weights_path=empty)
    for m in net.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
    path = tmp_path / "inception-random.pth"
    torch.save(net.state_dict(), path)
    return net, path


def test_inception_path_on_a_random_network(tmp_path):
    from sde_diffusion.metrics import InceptionFeatures, inception_features

    net, path = _random_inception(tmp_path)
    module, digest = inception_features(path)
    assert digest == weights_digest(module) == inception_features(path)[1]
    assert not module.standard and len(module.file_sha256) == 64
    x = torch.rand(3, 1, 8, 8, generator=torch.Generator().manual_seed(0)) * 2 - 1
    f = extract_features(module, x)
    assert f.shape == (3, 2048) and bool(torch.isfinite(f).all()) and float(f.std()) > 1e-3
    want = InceptionFeatures(net)(x)
    torch.testing.assert_close(f.float(), want, rtol=0, atol=0)
    rgb = extract_features(module, x.expand(-1, 3, -1, -1))
    torch.testing.assert_close(rgb, f, rtol=0, atol=0)  # gray is repeated to RGB
    for bad, what in [
        (torch.zeros(2, 2, 8, 8), "1 or 3"),
        (torch.full((2, 3, 8, 8), 255.0), r"in \[-1, 1\]"),
    ]:
        with pytest.raises(ValueError, match=what) as e:
            module(bad)
        one_line(e)


def test_inception_weights_refusals(tmp_path):
    pytest.importorskip("torch_fidelity")
    from sde_diffusion.metrics import inception_features

    with pytest.raises(ValueError, match=re.escape("weights-inception-2015-12-05")) as e:
        inception_features(tmp_path / "missing.pth")
    one_line(e)
    torch.save({"conv.weight": torch.zeros(3)}, tmp_path / "other.pth")
    with pytest.raises(ValueError, match="not torch-fidelity's Inception-v3") as e:
        inception_features(tmp_path / "other.pth")
    one_line(e)
    torch.save([1, 2, 3], tmp_path / "list.pth")
    with pytest.raises(ValueError, match="not a state dict") as e:
        inception_features(tmp_path / "list.pth")
    one_line(e)
