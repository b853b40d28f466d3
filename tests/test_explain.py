"""``audiocls explain``: saliency arrays land where the class evidence is, the figure and the CLI."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import torch.nn.functional as F
from torch import nn

from audiocls.audio.frontend import build_frontend
from audiocls.cli import main
from audiocls.commands.explain import compute_saliency, mel_centres_hz, plot_saliency
from audiocls.models.classifier import AudioClassifier
from audiocls.training.checkpoints import LoadedModel, load_checkpoint
from tests.conftest import TINY_FRONTEND
from tests.test_predict import CLASSES, make_checkpoint

SR = 8000


def tone_clip(freq: float, start: float, seed: int = 0, span: float = 0.2, level: float = 0.5) -> np.ndarray:
    """1 s of weak noise with a Hann-shaped tone of ``freq`` Hz from ``start`` to ``start + span`` seconds."""
    rng = np.random.default_rng(seed)
    x = 0.05 * rng.standard_normal(SR)
    n, s = round(span * SR), round(start * SR)
    x[s : s + n] += level * np.sin(2 * np.pi * freq * np.arange(n) / SR) * np.hanning(n)
    return x.astype(np.float32)


def box(loaded: LoadedModel, freq: float, start: float, span: float = 0.2, shape=(32, 64)) -> np.ndarray:
    """(n_mels, frames) mask of the image region of a tone: +-25 % around ``freq``, the span +-50 ms."""
    hz = mel_centres_hz(loaded, shape[0])
    t = (np.arange(shape[1]) + 0.5) / shape[1] * loaded.clip_seconds
    return (np.abs(hz - freq) <= 0.25 * freq)[:, None] & ((t >= start - 0.05) & (t <= start + span + 0.05))[None]


class PeakDetector(nn.Module):
    """A fixed "loudest spot" detector: class 0 scores the image's strongest smoothed log-mel, class 1 its opposite.

    The evidence for class 0 is wherever the input is loudest, so a correct saliency map must sit on the tone
    (wrong axes, a flipped time or frequency axis or a misaligned upsampling would miss it).
    """

    def forward_features(self, spec: torch.Tensor) -> torch.Tensor:
        """spec (B, C, M, F) -> positive map (B, 1, M, F)."""
        return torch.exp(F.avg_pool2d(spec.mean(1, keepdim=True), 3, stride=1, padding=1))

    def forward_head(self, feats: torch.Tensor) -> torch.Tensor:
        peak = feats.flatten(1).amax(1).log()
        return torch.stack([peak, -peak], 1)

    def forward(self, spec: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(spec))


@pytest.fixture(scope="module")
def detector() -> LoadedModel:
    model = AudioClassifier("test_resnet", num_classes=2, in_chans=3, class_names=["loud", "quiet"])
    model.backbone = PeakDetector()
    return LoadedModel(model.eval(), build_frontend(TINY_FRONTEND, SR).eval(), SR, SR, ["loud", "quiet"], Path("-"))


@pytest.mark.parametrize(("freq", "start"), [(1000.0, 0.6), (2500.0, 0.1), (400.0, 0.35)])
def test_saliency_sits_on_the_tone(detector, freq, start):
    sal = compute_saliency(detector, tone_clip(freq, start), [0])
    mask = box(detector, freq, start)
    assert sal.grad.shape == (1, 3, 32, 64) and sal.gradcam.shape == (1, 32, 64)
    grad = sal.grad[0].sum(0)  # (n_mels, frames)
    assert grad[mask].sum() / grad.sum() > 0.95  # the box is ~5 % of the image
    cam = sal.gradcam[0]
    assert mask[np.unravel_index(cam.argmax(), mask.shape)]
    assert cam[mask].sum() / cam.sum() > 4 * mask.mean()  # a smooth map, but dense on the tone
    assert cam.min() >= 0.0 and cam.max() == pytest.approx(1.0)
    # Grad-CAM of the detector, worked out by hand: d log(max A) / d A is 1 / max A at the peak and 0 elsewhere, so
    # every weight (its spatial mean) is 1 / (max A * h * w), the map A / (max A * h * w) is positive, the upsampling
    # to the same size is the identity, and the normalised map is A / max A: exp(pooled - max pooled) of the input
    pooled = F.avg_pool2d(torch.from_numpy(sal.spec).double().mean(0)[None, None], 3, stride=1, padding=1)[0, 0]
    np.testing.assert_allclose(cam, (pooled - pooled.max()).exp().numpy(), rtol=1e-4, atol=1e-6)
    # the spectrogram itself is loudest there too: the arrays share one orientation
    assert mask[np.unravel_index(sal.spec.mean(0).argmax(), mask.shape)]


def test_timm_split_matches_the_model_and_every_target_gets_a_map(tmp_path):
    loaded = load_checkpoint(make_checkpoint(tmp_path / "m.ckpt"))
    wave = tone_clip(1000.0, 0.3)
    sal = compute_saliency(loaded, wave, [2, 0, 1])
    with torch.no_grad():
        probs = loaded.model(loaded.frontend(torch.from_numpy(wave)[None]))[0].softmax(-1).numpy()
    np.testing.assert_allclose(sal.probs, probs, atol=1e-5)  # forward_features + forward_head == forward
    assert sal.grad.shape == (3, 3, 32, 64) and sal.gradcam.shape == (3, 32, 64)
    assert all(sal.grad[k].sum() > 0 for k in range(3))
    assert not np.allclose(sal.grad[0], sal.grad[1])  # one map per class, not one map three times

    png = plot_saliency(sal, loaded, tmp_path / "fig.png")
    image = plt_imread(png)
    assert image.ndim == 3 and image.shape[0] > 500  # three rows of panels


def plt_imread(path: Path) -> np.ndarray:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.image

    return matplotlib.image.imread(path)


def test_explain_command_writes_png_and_arrays(tmp_path, capsys):
    ckpt = make_checkpoint(tmp_path / "m.ckpt")
    sf.write(tmp_path / "long.wav", np.concatenate([tone_clip(500.0, 0.2, seed=s) for s in range(3)]), SR)
    out, arrays = tmp_path / "s.png", tmp_path / "s.npz"
    code = main(["explain", f"--ckpt_path={ckpt}", str(tmp_path / "long.wav"), f"--out={out}", "--top_k=2",
                 f"--save_arrays={arrays}"])  # fmt: skip
    assert code == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    saved = np.load(arrays)
    assert saved["grad"].shape == (2, 3, 32, 64) and saved["gradcam"].shape == (2, 32, 64)
    out_line = capsys.readouterr().out
    assert "wrote" in out_line
    # the expected top 2, from the checkpoint's weights and a frontend built here, on the window the command names
    start, end = (float(x) for x in out_line.rsplit("[", 1)[1].split(" s]")[0].split("-"))
    model = AudioClassifier("test_resnet", num_classes=len(CLASSES), in_chans=3, class_names=CLASSES).eval()
    model.load_state_dict(torch.load(ckpt, weights_only=True)["state_dict"])
    wave = sf.read(tmp_path / "long.wav", dtype="float32")[0][round(start * SR) : round(end * SR)]
    with torch.no_grad():
        probs = model(build_frontend(TINY_FRONTEND, SR)(torch.from_numpy(wave)[None]))[0].softmax(0)
    assert end - start == pytest.approx(1.0) and saved["probs"] == pytest.approx(probs.numpy(), abs=1e-5)
    assert saved["targets"].tolist() == probs.argsort(descending=True)[:2].tolist()

    code = main(["explain", f"--ckpt_path={ckpt}", str(tmp_path / "long.wav"), "--target=chirp_up",
                 "--start_seconds=1.5", f"--save_arrays={arrays}"])  # fmt: skip
    assert code == 0
    assert np.load(arrays)["targets"].tolist() == [CLASSES.index("chirp_up")]
    assert "[1.50-2.50 s]" in capsys.readouterr().out


def test_unknown_target_lists_the_classes(tmp_path, capsys):
    ckpt = make_checkpoint(tmp_path / "m.ckpt")
    sf.write(tmp_path / "a.wav", tone_clip(500.0, 0.2), SR)
    code = main(["explain", f"--ckpt_path={ckpt}", str(tmp_path / "a.wav"), "--target=dog"])
    err = capsys.readouterr().err
    assert code == 2
    assert "'dog'" in err and all(name in err for name in CLASSES)


@pytest.mark.slow
def test_trained_model_saliency_follows_the_class_defining_tone(tmp_path):
    """Train test_resnet to tell a 1 kHz tone from a 2.5 kHz tone (each at a random time in noise); the
    gradient saliency of each class is concentrated on its tone's mel band and time span."""
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    freqs = (1000.0, 2500.0)
    frontend = build_frontend(TINY_FRONTEND, SR)
    model = AudioClassifier("test_resnet", num_classes=2, in_chans=3, class_names=["low", "high"])
    opt = torch.optim.Adam(model.parameters(), 3e-3)
    model.train()
    for _ in range(20):
        y = rng.integers(0, 2, 8)
        waves = [
            tone_clip(freqs[k] * rng.uniform(0.95, 1.05), rng.uniform(0, 0.8), seed=int(rng.integers(1e9))) for k in y
        ]
        with torch.no_grad():
            spec = frontend(torch.from_numpy(np.stack(waves)))
        loss = F.cross_entropy(model(spec), torch.from_numpy(y))
        opt.zero_grad()
        loss.backward()
        opt.step()
    loaded = LoadedModel(model.eval(), frontend.eval(), SR, SR, ["low", "high"], Path("-"))
    hz = mel_centres_hz(loaded, 32)
    for k, freq in enumerate(freqs):
        for start in (0.1, 0.6):
            sal = compute_saliency(loaded, tone_clip(freq, start, seed=5), [k])
            assert sal.probs[k] > 0.8  # it learned the task
            grad = sal.grad[0].sum(0)
            peak_row = int(grad.sum(1).argmax())
            assert abs(hz[peak_row] - freq) <= 0.25 * freq  # the most salient mel band is the tone's
            mask = box(loaded, freq, start)
            assert grad[mask].sum() / grad.sum() > 1.5 * mask.mean()  # denser on the tone than elsewhere


def test_explain_refuses_a_folder_as_out_before_loading(tmp_path, monkeypatch, capsys):
    """Issue 15 item 5: --out is checked first, one line naming the path."""
    from audiocls.commands import explain

    sf.write(tmp_path / "a.wav", np.zeros(8000, np.float32), 8000)
    (tmp_path / "folder").mkdir()
    monkeypatch.setattr(explain, "load_checkpoint", lambda *a, **k: pytest.fail("the checkpoint was read first"))
    code = main(["explain", "--ckpt_path=x.ckpt", str(tmp_path / "a.wav"), f"--out={tmp_path / 'folder'}"])
    lines = [x for x in capsys.readouterr().err.splitlines() if x.startswith("audiocls: error:")]
    assert code == 2 and len(lines) == 1 and str(tmp_path / "folder") in lines[0], lines
