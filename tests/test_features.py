"""The log-mel frontend: paper parity, shapes, batch consistency, determinism, gradients, normalisation."""

from __future__ import annotations

import copy
import math
import pickle

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchaudio

from audiocls.audio.frontend import FrontendConfig, LogMelFrontend, build_frontend
from audiocls.audio.spectral import PitchTime
from audiocls.data.io import load_audio, pad_or_crop
from audiocls.errors import ConfigError
from tests.conftest import ESC10, TINY_FRONTEND

#: largest |ours - reference| allowed on ln-mel values (which span about -14..+10): float32 rounding of the
#: STFT and of PIL's resampling, measured at ~3e-4
PARITY_ATOL = 2e-3


def _tone(freq: float, sr: int, seconds: float = 1.0) -> torch.Tensor:
    t = torch.arange(int(sr * seconds)) / sr
    return torch.sin(2 * math.pi * freq * t)


def paper_reference(clip: np.ndarray, sr: int, frames: int = 250) -> np.ndarray:
    """The official code's per-clip features (preprocessingESC.py / datasetaug.py), one clip at a time.

    torchaudio MelSpectrogram at its defaults per channel, ``np.log(spec + 1e-6)``, PIL bilinear resize.
    """
    from PIL import Image

    specs = []
    for win_ms, hop_ms in zip((25, 50, 100), (10, 25, 50), strict=True):
        mel = torchaudio.transforms.MelSpectrogram(
            sample_rate=sr,
            n_fft=round(0.1 * sr),
            win_length=int(round(win_ms * sr / 1000)),
            hop_length=int(round(hop_ms * sr / 1000)),
            n_mels=128,
        )
        spec = np.log(mel(torch.Tensor(clip)).numpy() + 1e-6)
        specs.append(np.asarray(Image.fromarray(spec).resize((frames, 128), Image.BILINEAR)))
    return np.array(specs)  # (3, 128, frames)


def test_paper_defaults_shape_and_fft():
    fe = LogMelFrontend(FrontendConfig(), 44100)
    assert fe.n_fft == 4410 and fe.win_lengths == [1102, 2205, 4410] and fe.hops == [441, 1102, 2205]
    assert fe.fb.shape == (2206, 128)
    out = fe(torch.randn(2, 44100 * 5))
    assert out.shape == (2, 3, 128, 250) and out.dtype == torch.float32
    assert LogMelFrontend(FrontendConfig.paper(1500), 22050).n_fft == 2205
    assert FrontendConfig.paper(1500).size == (128, 1500)


def test_pil_float_resize_is_antialiased_bilinear():
    from PIL import Image

    img = np.random.default_rng(0).normal(0, 5, (128, 501)).astype(np.float32)
    pil = np.asarray(Image.fromarray(img).resize((250, 128), Image.BILINEAR))
    ours = F.interpolate(torch.from_numpy(img)[None, None], (128, 250), mode="bilinear", antialias=True)
    plain = F.interpolate(torch.from_numpy(img)[None, None], (128, 250), mode="bilinear")
    assert np.abs(ours[0, 0].numpy() - pil).max() < 1e-3
    assert np.abs(plain[0, 0].numpy() - pil).max() > 1.0  # without antialias it is another image


def test_batched_frontend_matches_the_papers_per_clip_code_on_tones():
    sr = 44100
    gen = torch.Generator().manual_seed(0)
    clips = torch.stack(
        [
            _tone(440, sr, 5.0) + 0.5 * _tone(3000, sr, 5.0),
            _tone(100, sr, 5.0) * torch.linspace(0, 1, 5 * sr),
            torch.randn(5 * sr, generator=gen) * 0.01,
        ]
    )
    ours = LogMelFrontend(FrontendConfig(), sr)(clips).numpy()
    for clip, spec in zip(clips.numpy(), ours, strict=True):
        ref = paper_reference(clip, sr)
        assert spec.shape == ref.shape == (3, 128, 250)
        assert np.abs(spec - ref).max() < PARITY_ATOL


@pytest.mark.real_data
def test_batched_frontend_matches_the_papers_per_clip_code_on_esc10():
    files = sorted((ESC10 / "audio").glob("*.ogg"))[:4] if ESC10.is_dir() else []
    if not files:
        pytest.skip(f"no ESC-10 clips under {ESC10}")
    sr = 44100
    clips = np.stack([pad_or_crop(load_audio(f, sr), 5 * sr) for f in files])
    ours = LogMelFrontend(FrontendConfig(), sr)(torch.from_numpy(clips)).numpy()
    for clip, spec in zip(clips, ours, strict=True):
        assert np.abs(spec - paper_reference(clip, sr)).max() < PARITY_ATOL


def test_batched_equals_per_item_and_eval_is_deterministic():
    fe = build_frontend({"n_mels": 32, "size": [32, 50]}, 8000).eval()
    batch = torch.stack([_tone(440, 8000), _tone(1000, 8000) * 0.1, torch.randn(8000) * 0.01])
    out = fe(batch)
    per_item = torch.cat([fe(b[None]) for b in batch])
    assert torch.allclose(out, per_item, atol=1e-5)
    assert torch.equal(out, fe(batch))


def test_tone_peaks_at_its_mel_bin():
    fe = LogMelFrontend(FrontendConfig(windows_ms=(50.0,), hops_ms=(25.0,), size=None, n_mels=64), 16000)
    spec = fe(_tone(1000, 16000)[None])  # (1, 1, 64, frames)
    peak = spec[0, 0].mean(-1).argmax().item()
    centres = fe.fb.argmax(0)  # frequency bin with the largest weight of each mel filter
    freq_of_peak = centres[peak].item() * 16000 / fe.n_fft
    assert abs(freq_of_peak - 1000) < 80


def test_plain_single_channel_logmel_in_db_and_ln():
    db = build_frontend(FrontendConfig.logmel(window_ms=25, hop_ms=10, n_mels=40, log="db"), 16000)
    ln = build_frontend(FrontendConfig.logmel(window_ms=25, hop_ms=10, n_mels=40, log="ln"), 16000)
    wave = torch.randn(2, 16000)
    out_db, out_ln = db(wave), ln(wave)
    assert db.out_channels == 1 and out_db.shape == (2, 1, 40, 101)
    assert torch.allclose(out_db, out_ln * 10 / math.log(10), atol=1e-4)
    # the same values as torchaudio's own MelSpectrogram, one clip at a time
    ref = torchaudio.transforms.MelSpectrogram(16000, n_fft=400, win_length=400, hop_length=160, n_mels=40)
    assert torch.allclose(out_ln[1, 0], torch.log(ref(wave[1]) + 1e-6), atol=1e-4)


def test_per_channel_normalisation_and_checkpoint_dict_round_trip():
    cfg = {**TINY_FRONTEND, "mean": [1.0, 2.0, 3.0], "std": [2.0, 4.0, 8.0]}
    fe, raw = build_frontend(cfg, 8000), build_frontend(TINY_FRONTEND, 8000)
    wave = torch.randn(2, 8000)
    expected = (raw(wave) - torch.tensor([1.0, 2.0, 3.0]).view(3, 1, 1)) / torch.tensor([2.0, 4.0, 8.0]).view(3, 1, 1)
    assert torch.allclose(fe(wave), expected, atol=1e-5)
    assert fe.config.mean == (1.0, 2.0, 3.0)


def test_training_statistics_normalise_the_training_set(tiny_root):
    from audiocls.data.synthetic import SyntheticDataModule

    kw = dict(num_classes=4, clips_per_fold=3, seconds=1.0, sample_rate=8000, batch_size=4, num_workers=0)
    dm = SyntheticDataModule(tiny_root, frontend=FrontendConfig(**_tuples(TINY_FRONTEND)), normalize="train", **kw)
    dm.setup("fit")
    mean, std = dm.frontend.config.mean, dm.frontend.config.std
    assert len(mean) == len(std) == 3 and all(s > 0 for s in std)
    normed = dm.frontend
    loader = torch.utils.data.DataLoader(dm.splits["train"], batch_size=8)
    spec = torch.cat([normed(w) for w, _ in loader])  # every training clip, whole (1 s clips: no random crop)
    assert spec.mean(dim=(0, 2, 3)).abs().max() < 1e-3
    assert (spec.std(dim=(0, 2, 3), correction=0) - 1).abs().max() < 1e-3


def _tuples(d: dict) -> dict:
    return {k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}


def test_filterbanks_are_torchaudios_and_mel_norm_is_explicit():
    slaney = build_frontend({"mel_scale": "slaney", "mel_norm": "slaney", "n_mels": 32, "size": [32, 50]}, 8000)
    ref = torchaudio.transforms.MelSpectrogram(8000, n_fft=800, n_mels=32, mel_scale="slaney", norm="slaney")
    assert torch.allclose(slaney.fb, ref.mel_scale.fb)
    htk = build_frontend({"n_mels": 32, "size": [32, 50]}, 8000)
    assert torch.allclose(htk.fb, torchaudio.transforms.MelSpectrogram(8000, n_fft=800, n_mels=32).mel_scale.fb)
    # no compatibility rule: the slaney scale alone keeps unnormalised triangles
    assert build_frontend({"mel_scale": "slaney", "n_mels": 32, "size": [32, 50]}, 8000).config.mel_norm is None


def test_banded_projection_covers_every_filter_weight():
    fe = LogMelFrontend(FrontendConfig(), 44100)
    covered = torch.zeros_like(fe.fb, dtype=torch.bool)
    for lo, hi, m0, m1 in fe.bands:
        covered[lo:hi, m0:m1] = True
    assert fe.bands[0][2] == 0 and fe.bands[-1][3] == 128
    assert all(a[3] == b[2] for a, b in zip(fe.bands, fe.bands[1:], strict=False))  # consecutive groups
    assert covered[fe.fb != 0].all() and 1 < len(fe.bands) < 128
    assert int(covered.sum()) < fe.fb.numel() // 2  # it skips most of the dense matrix
    power = torch.rand(7, 2206) ** 4
    banded = torch.cat([power[:, lo:hi] @ fe.fb[lo:hi, m0:m1] for lo, hi, m0, m1 in fe.bands], -1)
    torch.testing.assert_close(banded, power @ fe.fb, rtol=1e-5, atol=0)


@pytest.mark.parametrize("chunk", [50, 300, 100000])
def test_chunking_does_not_change_the_output(chunk):
    gen = torch.Generator().manual_seed(0)
    wave = torch.randn(5, 44100, generator=gen) * torch.linspace(0, 1, 44100)
    whole = LogMelFrontend(FrontendConfig(), 44100, chunk_frames=10**9)(wave)
    with torch.no_grad():  # the chunked loop (with autograd on a wave that needs grad it takes the plain path)
        torch.testing.assert_close(LogMelFrontend(FrontendConfig(), 44100, chunk_frames=chunk)(wave), whole)


def test_a_used_frontend_deep_copies_and_pickles():
    fe = LogMelFrontend(FrontendConfig(), 44100)
    wave = torch.randn(2, 44100) * 0.1
    pt = PitchTime(torch.tensor([0.0, 2.0]), torch.tensor([1.0, 1.1]))
    with torch.no_grad():
        out = fe(wave, pt)  # fills the warped-filterbank cache
        assert fe._warped
        for twin in (copy.deepcopy(fe), pickle.loads(pickle.dumps(fe))):
            assert torch.equal(twin(wave, pt), out)


def test_buffers_move_with_to():
    fe = LogMelFrontend(FrontendConfig(), 44100).to(torch.float64)
    names = {n for n, _ in fe.named_buffers()}
    assert {"fb", "fb2", "window0", "window1", "window2", "mean", "std"} <= names
    assert all(b.dtype == torch.float64 for b in fe.buffers())


def test_gradients_reach_the_waveform():
    fe = build_frontend({"n_mels": 32, "size": [32, 50]}, 8000)
    wave = torch.randn(2, 8000, requires_grad=True)
    fe(wave).sum().backward()
    assert wave.grad is not None and wave.grad.abs().sum() > 0


def test_frontend_runs_in_float32_under_autocast():
    fe = build_frontend({"n_mels": 32, "size": [32, 50]}, 8000)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = fe(torch.randn(1, 8000).bfloat16())
    assert out.dtype == torch.float32


@pytest.mark.parametrize(
    ("kwargs", "sr", "match"),
    [
        ({"windows_ms": (25.0, 50.0), "hops_ms": (10.0,)}, 8000, "same length"),
        ({"f_max": 8000.0}, 8000, "Nyquist"),
        ({"size": None}, 8000, "hops differ"),
        ({"n_fft": 256}, 8000, "n_fft=256"),
        ({"mean": (0.0, 1.0)}, 8000, "one per channel"),
        ({"std": 0.0}, 8000, "std=0.0"),
    ],
)
def test_bad_settings_are_named(kwargs, sr, match):
    with pytest.raises(ConfigError, match=match):
        LogMelFrontend(FrontendConfig(**kwargs), sr)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cpu_and_cuda_frontends_agree():
    fe = LogMelFrontend(FrontendConfig(), 44100)
    wave = torch.randn(4, 5 * 44100) * 0.1
    cpu = fe(wave)
    cuda = fe.to("cuda")(wave.cuda()).cpu()
    assert (cpu - cuda).abs().max() < PARITY_ATOL
