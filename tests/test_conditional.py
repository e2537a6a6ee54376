"""Class-conditional score models, label dropout, the noise-conditional classifier, classifier-
free guidance against exact answers (the tilted density), and ``label=``/``guidance=`` in the
apps (issue 15). Exact Gaussian-mixture oracles grade everything that has an exact answer."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from sde_diffusion.apps._common import UsageError
from sde_diffusion.config import build, compose
from sde_diffusion.data.arrays import ArrayDataset
from sde_diffusion.data.toy import ToyDataset, mixture_dataset
from sde_diffusion.guidance import (
    ExactClassifier,
    cfg_score,
    class_conditional,
    classifier_guided_score,
)
from sde_diffusion.guidance.classifier import (
    ClassifierLoss,
    NoiseClassifier,
    classifier_tv,
    load_classifier,
)
from sde_diffusion.guidance.labels import bind_label, drop_labels
from sde_diffusion.guidance.tilted import cfg_against_exact, tilted_density
from sde_diffusion.losses import DSMLoss
from sde_diffusion.metrics.total_variation import bin_masses, tv_to_mixture
from sde_diffusion.mixture import GaussianMixture
from sde_diffusion.models import MLP, UNet
from sde_diffusion.parametrisation import ScoreModel
from sde_diffusion.sampling import sample
from sde_diffusion.sde import VPSDE
from sde_diffusion.training import Trainer
from sde_diffusion.training.rebuild import UnsafeConfigError

#: a labelled 2-D mixture whose two classes overlap (components 0, 1 -> class 0; 2, 3 -> 1)
MEANS = [[-1.5, 0.0], [1.5, 0.0], [0.0, 1.5], [0.0, -1.5]]
LABELS = [0, 0, 1, 1]


def overlapping(dtype=torch.float64) -> GaussianMixture:
    return GaussianMixture([0.25] * 4, MEANS, stds=[0.6] * 4, dtype=dtype)


def solver(name: str):
    return build(compose("sample", [f"solver={name}"]), "solver")


# ---------------------------------------------------------------- CFG, w = 0
@pytest.mark.parametrize("name", ["euler_maruyama", "ode_heun"])
def test_cfg_with_w0_reproduces_the_conditional_sampler_bit_for_bit(name):
    sde, mix = VPSDE(), overlapping()
    cond = class_conditional(mix, LABELS, 1)
    runs = []
    for score in (cond.score_fn(sde), cfg_score(cond.score_fn(sde), mix.score_fn(sde), 0.0)):
        gen = torch.Generator().manual_seed(7)
        runs.append(sample(sde, score, solver(name), (500, 2), steps=40, generator=gen).x)
    assert torch.equal(runs[0], runs[1])


def test_exact_classifier_guidance_at_scale_one_is_the_exact_conditional_score():
    sde, mix = VPSDE(), overlapping()
    exact = ExactClassifier(mix, LABELS, sde)
    guided = classifier_guided_score(mix.score_fn(sde), exact.log_prob_fn(0), 1.0)
    x = torch.randn(64, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 2
    for t in (0.05, 0.4, 0.9):
        tt = torch.full((64,), t, dtype=torch.float64)
        want = class_conditional(mix, LABELS, 0).score(x, tt, sde)
        assert torch.allclose(guided(x, tt), want, atol=1e-10)


def test_classifier_guidance_interval_is_per_sample():
    sde, mix = VPSDE(), overlapping()
    log_prob = ExactClassifier(mix, LABELS, sde).log_prob_fn(1)
    plain = classifier_guided_score(mix.score_fn(sde), log_prob, 2.0)
    gated = classifier_guided_score(mix.score_fn(sde), log_prob, 2.0, t_interval=(0.2, 0.5))
    x = torch.randn(4, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    t = torch.tensor([0.1, 0.3, 0.5, 0.7], dtype=torch.float64)
    got, want = gated(x, t), plain(x, t)
    assert torch.equal(got[1:3], want[1:3])  # inside: the guided score, bit for bit
    assert torch.equal(got[[0, 3]], mix.score(x, t, sde)[[0, 3]])  # outside: s(x, t)


# ---------------------------------------------------------------- conditional networks
def test_unconditional_networks_keep_their_weights_and_keys():
    torch.manual_seed(0)
    old = MLP(2, hidden=32, depth=2, embed_dim=16)
    torch.manual_seed(0)
    new = MLP(2, hidden=32, depth=2, embed_dim=16, num_classes=3)
    assert not any("label" in k for k in old.state_dict())
    extra = set(new.state_dict()) - set(old.state_dict())
    assert extra == {"label_embed.table.weight"}
    for k, v in old.state_dict().items():  # the table is made last: same draws before it
        assert torch.equal(v, new.state_dict()[k])
    # zero-initialised table: an untrained conditional network is the unconditional one
    x, c = torch.randn(5, 2), torch.rand(5)
    assert torch.equal(old(x, c), new(x, c, torch.tensor([0, 1, 2, 3, 0])))
    unet = UNet(1, 8, ch=16, ch_mult=(1, 2), attn_resolutions=(4,))
    assert not any("label" in k for k in unet.state_dict())


@pytest.mark.parametrize("make", ["mlp", "unet"])
def test_conditional_model_runs_with_labels_none_and_the_null_label(make):
    torch.manual_seed(0)
    if make == "mlp":
        net, x = MLP(2, hidden=32, depth=2, embed_dim=16, num_classes=3), torch.randn(4, 2)
    else:
        net = UNet(1, 8, ch=16, ch_mult=(1, 2), num_res_blocks=1, attn_resolutions=(4,),
                   dropout=0.0, num_classes=3)  # fmt: skip
        x = torch.randn(4, 1, 8, 8)
    with torch.no_grad():
        net.label_embed.table.weight.normal_()
    model = ScoreModel(net, VPSDE())
    t = torch.full((4,), 0.3)
    s_none, s_null = model(x, t), model(x, t, torch.full((4,), 3))
    assert torch.equal(s_none, s_null) and s_none.shape == x.shape
    assert not torch.allclose(model(x, t, torch.tensor([0, 1, 2, 0])), s_none)


@pytest.mark.parametrize(
    "y, message",
    [
        (torch.tensor([0.0, 1.0]), "integer labels"),
        (torch.tensor([[0], [1]]), r"shape \(B,\)"),
        (torch.tensor([0, 4]), r"0 \.\. 2"),
        (torch.tensor([-1, 0]), r"0 \.\. 2"),
    ],
)
def test_bad_labels_refused_in_one_line(y, message):
    net = MLP(2, hidden=16, depth=1, embed_dim=8, num_classes=3)
    with pytest.raises(ValueError, match=message) as err:
        net(torch.randn(2, 2), torch.zeros(2), y)
    assert "\n" not in str(err.value)
    with pytest.raises(ValueError, match="unconditional"):
        MLP(2, hidden=16, depth=1, embed_dim=8)(torch.randn(2, 2), torch.zeros(2), y)


# ---------------------------------------------------------------- training with labels
def test_label_dropout_fraction_and_the_trainer_passes_labels():
    y = torch.zeros(100_000, dtype=torch.long)
    dropped = drop_labels(y, 0.2, 5, torch.Generator().manual_seed(0))
    frac = float((dropped == 5).double().mean())
    assert abs(frac - 0.2) < 0.005  # 4 binomial standard deviations (0.00126)
    assert drop_labels(y, 0.0, 5) is y

    seen: list[torch.Tensor] = []

    def spy(model, x0, generator=None, labels=None):
        seen.append(labels)
        return model(x0).pow(2).mean()

    data = torch.randn(512, 2)
    labels = torch.arange(512) % 4
    trainer = Trainer(
        torch.nn.Linear(2, 2), spy, data, batch_size=256, labels=labels, p_uncond=0.3,
        null_label=4, seed=1,
    )  # fmt: skip
    trainer.fit(40)
    got = torch.cat(seen)
    assert abs(float((got == 4).double().mean()) - 0.3) < 0.04  # 10240 draws: 4.4 sd
    assert set(got.unique().tolist()) == {0, 1, 2, 3, 4}

    def unlabelled(model, x0, generator=None):  # no labels: called exactly as before
        return model(x0).pow(2).mean()

    Trainer(torch.nn.Linear(2, 2), unlabelled, data, batch_size=256).fit(2)


def test_labelled_data_sets():
    toy = ToyDataset("eight_gaussians", n=4000, seed=3)
    nearest = ((toy.data[:, None].double() - toy.mixture.means[None]) ** 2).sum(-1).argmin(1)
    agree = float((toy.labels == nearest).double().mean())
    assert agree > 0.999  # modes 7.7 std apart: all but the rare point past 3.8 std
    mixed = mixture_dataset([0.25] * 4, MEANS, stds=[0.6] * 4, n=1000, labels=LABELS)
    assert set(mixed.labels.tolist()) == {0, 1}
    assert ToyDataset("moons", n=10).labels is None


def test_array_npz_labels_split_with_the_rows(tmp_path):
    x = np.arange(40, dtype=np.float64).reshape(20, 2)
    np.savez(tmp_path / "d.npz", x=x, labels=np.arange(20) % 3)
    for split in ("train", "test"):
        ds = ArrayDataset(str(tmp_path / "d.npz"), split=split, standardise=False)
        assert torch.equal(ds.labels, (ds.data[:, 0] / 2).long() % 3)
    np.savez(tmp_path / "bad.npz", x=x, labels=np.zeros(19, dtype=np.int64))
    with pytest.raises(ValueError, match="'labels' must be 20 non-negative integers"):
        ArrayDataset(str(tmp_path / "bad.npz"))


def test_conditional_mlp_puts_label_k_samples_in_component_k():
    """A 48-wide conditional MLP, 400 steps on three separated modes, each its own class: at
    least 90% of the samples drawn for label k land nearest mode k (measured: 99-100%;
    an unconditional sampler would give ~33%)."""
    means = [[-3.0, 0.0], [3.0, 0.0], [0.0, 3.0]]
    ds = mixture_dataset([1 / 3] * 3, means, stds=[0.4] * 3, n=8000, seed=0)
    sde = VPSDE()
    torch.manual_seed(0)
    model = ScoreModel(MLP(2, hidden=48, depth=2, embed_dim=16, num_classes=3), sde, "edm", 1.5)
    trainer = Trainer(
        model, DSMLoss(sde), ds.data, labels=ds.labels, p_uncond=0.1, null_label=3,
        batch_size=256, lr=3e-3, warmup=50, ema_decay=0.99, ema_warmup=True,
        lr_decay="cosine", decay_steps=400, seed=0,
    )  # fmt: skip
    trainer.fit(400)
    ema = trainer.ema.module.eval()
    mu = torch.tensor(means)
    for k in range(3):
        gen = torch.Generator().manual_seed(k)
        with torch.no_grad():
            x = sample(sde, bind_label(ema, k), solver("euler_maruyama"), (300, 2), steps=60,
                       generator=gen).x  # fmt: skip
        hit = float((((x[:, None] - mu[None]) ** 2).sum(-1).argmin(1) == k).float().mean())
        assert hit > 0.9, (k, hit)


def test_noise_conditional_classifier_matches_the_exact_classifier():
    """Trained 800 steps on the overlapping mixture: mean TV between its class probabilities
    and the exact p_t(y|x) under p_t is below 0.04 at t = 0.05, 0.1, 0.3, 0.6 (measured
    0.019, 0.020, 0.020, 0.006); the prior (0.5, 0.5) is far off (0.16 to 0.3 at t <= 0.3).
    Classifier guidance with it samples p(x | y) at the floor."""
    sde = VPSDE()
    ds = mixture_dataset([0.25] * 4, MEANS, stds=[0.6] * 4, n=20000, labels=LABELS)
    torch.manual_seed(0)
    clf = NoiseClassifier(MLP(2, hidden=64, depth=2, embed_dim=32, out_dim=2), sde, 2, 1.0)
    trainer = Trainer(
        clf, ClassifierLoss(sde), ds.data, labels=ds.labels, batch_size=256, lr=3e-3,
        warmup=50, ema_decay=0.99, ema_warmup=True, lr_decay="cosine", decay_steps=800, seed=0,
    )  # fmt: skip
    trainer.fit(800)
    exact = ExactClassifier(ds.mixture, LABELS, sde)

    class Prior:
        def log_probs(self, x, t):
            return torch.full((len(x), 2), math.log(0.5), dtype=x.dtype)

    for t in (0.05, 0.1, 0.3, 0.6):
        tv = classifier_tv(trainer.ema.module.eval(), exact, ds.mixture, sde, t)
        assert tv < 0.04, (t, tv)
        if t <= 0.3:
            assert classifier_tv(Prior(), exact, ds.mixture, sde, t) > 0.12
    # guidance with it (and the exact s(x)) samples p(x | y = 0): TV/floor measured 1.01
    # (the exact classifier: 0.99); 3000 samples, 60 steps, 32 x 32 bins
    cond = class_conditional(ds.mixture, LABELS, 0).at(sde.eps, sde)
    uncond = ds.mixture.score_fn(sde)
    guided = classifier_guided_score(uncond, trainer.ema.module.eval().log_prob_fn(0), 1.0)
    ratios = []
    for score in (guided, uncond):
        x = sample(sde, score, solver("euler_maruyama"), (3000, 2), steps=60, dtype=torch.float64,
                   generator=torch.Generator().manual_seed(0)).x  # fmt: skip
        ratios.append(tv_to_mixture(x, cond, bins=32).ratio)
    assert ratios[0] < 1.25 and ratios[1] > 2  # unguided: half the mass is in class 1


# ---------------------------------------------------------------- the tilted density
def _gauss_tilt(m1, s1, m0, s0, w):
    """log Z, mean and variance of N(m1, s1^2)^(1+w) N(m0, s0^2)^(-w) (closed form)."""
    lam = (1 + w) / s1**2 - w / s0**2
    b = (1 + w) * m1 / s1**2 - w * m0 / s0**2
    c = -(1 + w) * m1**2 / (2 * s1**2) + w * m0**2 / (2 * s0**2)
    c += -(1 + w) * math.log(s1 * math.sqrt(2 * math.pi)) + w * math.log(
        s0 * math.sqrt(2 * math.pi)
    )
    return c + b * b / (2 * lam) + 0.5 * math.log(2 * math.pi / lam), b / lam, 1 / lam


@pytest.mark.parametrize("w", [0.0, 1.0, 3.0])
def test_tilted_density_matches_the_gaussian_closed_form(w):
    cond = GaussianMixture([1.0], [[0.5]], stds=[0.7], dtype=torch.float64)
    uncond = GaussianMixture([1.0], [[-0.3]], stds=[1.5], dtype=torch.float64)
    q = tilted_density(cond, uncond, w, bins=400, range=[(-8.0, 8.0)])
    log_z, mean, var = _gauss_tilt(0.5, 0.7, -0.3, 1.5, w)
    centres = (q.edges[0][1:] + q.edges[0][:-1]) / 2
    assert abs(float(q.masses.sum()) - 1) < 1e-12
    assert abs(q.log_normaliser - log_z) < 1e-9
    assert abs(float((q.masses * centres).sum()) - mean) < 1e-6
    assert abs(float((q.masses * (centres - mean) ** 2).sum()) - var) < 1e-3  # midpoint bias
    # 2-D, isotropic: the tilt factorises, log Z doubles
    c2 = GaussianMixture([1.0], [[0.5, 0.5]], stds=[0.7], dtype=torch.float64)
    u2 = GaussianMixture([1.0], [[-0.3, -0.3]], stds=[1.5], dtype=torch.float64)
    q2 = tilted_density(c2, u2, w, bins=100, range=[(-8.0, 8.0)] * 2)
    assert abs(q2.log_normaliser - 2 * log_z) < 1e-8


def test_tilted_density_at_w0_is_the_class_conditional():
    sde, mix = VPSDE(), overlapping()
    cond = class_conditional(mix, LABELS, 0)
    q = tilted_density(cond, mix, 0.0, t=0.01, sde=sde)
    assert abs(q.log_normaliser) < 1e-4  # 1 but the mass past 4 std (measured 3.2e-5)
    exact = bin_masses(cond.at(0.01, sde), q.edges)
    assert torch.allclose(q.masses, exact / exact.sum(), atol=1e-10)
    with pytest.raises(ValueError, match="w >= -1"):
        tilted_density(cond, mix, -2.0)


def test_cfg_does_not_sample_the_tilted_density():
    """Exact scores, Euler-Maruyama, 5000 samples, 32 x 32 bins: at w = 0 the samples are at
    the floor of both p(x|y) and q_0 (the same law; measured TV/floor 0.97); at w = 3 far from
    both (measured 3.1 to q_3, 3.7 to p(x|y); benchmarks/cfg_tilted_benchmark.py)."""
    sde, mix = VPSDE(), overlapping()
    em = solver("euler_maruyama")
    r0 = cfg_against_exact(mix, LABELS, 0, 0.0, sde, em, n=5000, steps=100, bins=32)
    assert r0["tv_cond"] < 1.3 * r0["floor_cond"] and r0["tv_tilted"] < 1.3 * r0["floor_tilted"]
    r3 = cfg_against_exact(mix, LABELS, 0, 3.0, sde, em, n=5000, steps=100, bins=32)
    assert r3["tv_tilted"] > 2 * r3["floor_tilted"] and r3["tv_cond"] > 2 * r3["floor_cond"]
    assert r3["in_class"] > r0["in_class"]  # guidance does push samples into the class


# ---------------------------------------------------------------- apps
SAMPLE = ["num_samples=2000", "steps=60", "progress=false", "figure=false"]


def _sample(tmp_path: Path, *overrides: str) -> dict:
    from sde_diffusion.apps.sample import run

    tmp_path.mkdir(parents=True, exist_ok=True)
    explicit = not any(o.startswith("checkpoint=") for o in overrides)  # else its own data
    return run(compose("sample", [*SAMPLE, *overrides]), tmp_path, explicit=explicit)


def test_sample_app_label_and_guidance_on_a_labelled_mixture(tmp_path):
    m = _sample(tmp_path, "label=3")
    assert m["label"] == 3 and m["guidance"] == 0.0 and m["tv"] < 1.3 * m["tv_floor"]
    assert m["tv_tilted"] < 1.3 * m["tv_tilted_floor"]  # w = 0: q_0 = p(x|y)
    over = ["data=gaussian_mixture", f"data.means={MEANS}", "data.stds=[0.6,0.6,0.6,0.6]"]
    over += ["data.weights=[0.25,0.25,0.25,0.25]", f"component_labels={LABELS}"]
    m = _sample(tmp_path, *over, "label=1", "guidance=2", "guidance_interval=[0.0,0.5]")
    assert m["guidance"] == 2.0 and m["guidance_interval"] == [0.0, 0.5] and "tv" in m
    with pytest.raises(UsageError, match=r"label=9 is out of range: the classes are 0 \.\. 7"):
        _sample(tmp_path, "label=9")
    with pytest.raises(UsageError, match="guidance must be a finite number"):
        _sample(tmp_path, "label=1", "guidance=abc")
    with pytest.raises(UsageError, match="need label=K"):
        _sample(tmp_path, "guidance=1")


TRAIN = [
    "train_data.n=2000", "model.hidden=32", "model.embed_dim=16", "train.steps=30",
    "train.batch_size=64", "sample.steps=10", "sample.num_samples=100", "progress=false",
    "train.checkpoint_every=30",
]  # fmt: skip


def test_sample_app_on_conditional_and_unconditional_checkpoints(tmp_path):
    from sde_diffusion.apps.train import run as train

    train(compose("train", [*TRAIN, "model.num_classes=8", "train.p_uncond=0.2"]), tmp_path / "c")
    train(compose("train", TRAIN), tmp_path / "u")
    cond = next((tmp_path / "c" / "checkpoints").iterdir())
    uncond = next((tmp_path / "u" / "checkpoints").iterdir())
    m = _sample(tmp_path / "s1", f"checkpoint={cond}", "label=2", "guidance=1.5")
    assert m["label"] == 2 and m["guidance"] == 1.5 and m["guidance_kind"] == "classifier-free"
    assert m["label_reference"] == "the exact p(x | y)" and math.isfinite(m["tv"])
    with pytest.raises(UsageError, match="is unconditional"):
        _sample(tmp_path / "s2", f"checkpoint={uncond}", "label=2")
    with pytest.raises(UsageError, match=r"the classes are 0 \.\. 7"):
        _sample(tmp_path / "s3", f"checkpoint={cond}", "label=8")
    with pytest.raises(UsageError, match="needs labelled data"):
        train(compose("train", [*TRAIN, "train_data=moons", "model.num_classes=2"]), tmp_path / "m")


def test_classifier_app_and_classifier_guided_sampling(tmp_path):
    from sde_diffusion.apps.train_classifier import run

    over = ["progress=false", "steps=300", "train_data.n=4000", "classifier_net.hidden=32"]
    summary = run(compose("train_classifier", over), tmp_path / "clf")
    assert set(summary["tv_to_exact"]) == {0.1, 0.3, 0.6} and summary["num_classes"] == 8
    clf = load_classifier(summary["checkpoint"])
    assert clf.n_classes == 8
    state = torch.load(summary["checkpoint"], weights_only=True)  # a file's config is data:
    state["config"] = state["config"].replace("sde_diffusion.models.MLP", "os.system")
    torch.save(state, tmp_path / "evil.pt")
    with pytest.raises(UnsafeConfigError, match="'os.system' is not an allowed class"):
        load_classifier(tmp_path / "evil.pt")
    m = _sample(tmp_path / "s", f"classifier={summary['checkpoint']}", "label=4")
    assert m["guidance_kind"] == "classifier" and m["label"] == 4
    assert m["tv"] < 3 * m["tv_floor"]  # 300 steps on 4000 points: roughly p(x | y = 4)


def test_classifier_training_resumes_to_the_same_weights(tmp_path):
    """sde-train-classifier checkpoints every checkpoint_every steps; resume=true from step 20
    of 40 ends with the weights of the uninterrupted run, bit for bit (CPU, same config, the
    lr schedule included); a conflicting override, checkpoints without resume=true and a
    stored config naming a class outside the allow-list are refused (the last before its
    module is imported)."""
    import sys

    from sde_diffusion.apps.train_classifier import run

    over = ["progress=false", "steps=40", "checkpoint_every=20", "train_data.n=1000",
            "classifier_net.hidden=16", "batch_size=64", "warmup=5"]  # fmt: skip
    ref = run(compose("train_classifier", over), tmp_path / "ref")
    want = torch.load(ref["checkpoint"], weights_only=True)
    out = tmp_path / "cut"
    run(compose("train_classifier", over), out)
    (out / "checkpoints" / "ckpt_00000040.pt").unlink()  # as if killed after step 20's file
    with pytest.raises(UsageError, match="already holds checkpoints: pass resume=true"):
        run(compose("train_classifier", over), out)
    with pytest.raises(UsageError, match=r"resume: lr=0.1 conflicts .*0.002"):
        run(compose("train_classifier", [*over, "resume=true", "lr=0.1"]), out, ["lr=0.1"])
    got = run(compose("train_classifier", [*over, "resume=true"]), out, ["resume=true"])
    assert got["step"] == 40 and got["steps_run"] == 20
    state = torch.load(got["checkpoint"], weights_only=True)
    for part in ("model", "ema"):
        for k, v in want[part].items():
            assert torch.equal(state[part][k], v), (part, k)
    evil = tmp_path / "evil"
    (evil / "checkpoints").mkdir(parents=True)
    state["config"] = state["config"].replace("sde_diffusion.models.MLP", "antigravity.Fly")
    torch.save(state, evil / "checkpoints" / "ckpt_00000040.pt")
    with pytest.raises(UnsafeConfigError, match="'antigravity.Fly' is not an allowed class"):
        run(compose("train_classifier", [*over, "resume=true", "steps=60"]), evil, ["steps=60"])
    assert "antigravity" not in sys.modules  # refused before anything imported it


def test_labelled_training_resumes_with_the_same_dropped_labels():
    """Label dropout draws from the checkpointed loss generator: 10 + 10 steps through a saved
    state repeat the losses of 20 uninterrupted steps exactly."""
    sde = VPSDE()
    ds = mixture_dataset([0.5, 0.5], [[-2.0, 0.0], [2.0, 0.0]], stds=[0.5, 0.5], n=512)

    def trainer() -> Trainer:
        torch.manual_seed(0)
        net = MLP(2, hidden=16, depth=1, embed_dim=8, num_classes=2)
        return Trainer(ScoreModel(net, sde), DSMLoss(sde), ds.data, labels=ds.labels,
                       p_uncond=0.5, null_label=2, batch_size=64, seed=3)  # fmt: skip

    full = trainer()
    full.fit(20)
    first = trainer()
    first.fit(10)
    state = first.state_dict()
    second = trainer()
    second.load_state_dict(state)
    second.fit(20)
    assert first.history + second.history == full.history


@pytest.mark.slow
def test_conditional_digits_checkpoint_records_label_accuracy(tmp_path):
    """20 steps of a class-conditional digits U-Net: sde-sample label=3 reports the fraction of
    samples the bundled digits CNN calls a 3, beside its accuracy on held-out 3s (> 0.9)."""
    from sde_diffusion.apps.train import run as train

    over = ["train_data=digits", "model=unet_digits_small", "model.num_classes=10",
            "train.p_uncond=0.1", "train.steps=20", "train.batch_size=64", "sample.steps=10",
            "sample.num_samples=16", "progress=false"]  # fmt: skip
    train(compose("train", over), tmp_path / "t")
    ckpt = next((tmp_path / "t" / "checkpoints").iterdir())
    m = _sample(tmp_path / "s", f"checkpoint={ckpt}", "label=3", "guidance=2", "num_samples=64",
                "steps=20")  # fmt: skip
    assert 0 <= m["label_accuracy"] <= 1 and m["label_accuracy_real"] > 0.9
    assert m["label_reference"].startswith("held-out data of all classes")
