"""Per-class decision thresholds of multi-label models: tuned on the validation split, kept in the checkpoint,
used by ``audiocls predict`` unless ``--threshold`` is given."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from audiocls.cli import main
from audiocls.models.multilabel import THRESHOLD, ThresholdTuner, tune_thresholds
from tests.test_multilabel import POLY, _fit_args, sklearn_tagging_figures, split_scores


def _best_f1_sklearn(scores: np.ndarray, target: np.ndarray) -> float:
    from sklearn.metrics import f1_score

    return max(f1_score(target, scores >= t, zero_division=0) for t in np.unique(scores))


def test_thresholds_maximise_each_class_f1_and_differ_where_the_scores_do():
    rng = np.random.default_rng(0)
    target = rng.random((200, 3)) < 0.3
    target[:, 2] = False  # no positives: keeps the default
    scores = np.empty((200, 3))
    scores[:, 0] = np.where(target[:, 0], rng.uniform(0.15, 0.35, 200), rng.uniform(0.0, 0.2, 200))  # low scores
    scores[:, 1] = np.where(target[:, 1], rng.uniform(0.7, 1.0, 200), rng.uniform(0.0, 0.8, 200))  # high ones
    scores[:, 2] = rng.random(200)
    thr = tune_thresholds(torch.from_numpy(scores), torch.from_numpy(target)).numpy()
    assert thr[0] < 0.3 < 0.65 < thr[1] and thr[2] == THRESHOLD
    from sklearn.metrics import f1_score

    for k in (0, 1):  # the tuned threshold reaches the best F1 any threshold reaches
        got = f1_score(target[:, k], scores[:, k] >= thr[k])
        assert got == pytest.approx(_best_f1_sklearn(scores[:, k], target[:, k]))
        assert got > f1_score(target[:, k], scores[:, k] >= 0.5)  # better than the default on both classes


def test_tuner_collects_batches_like_one_call():
    rng = np.random.default_rng(1)
    probs, target = torch.from_numpy(rng.random((30, 4))).float(), torch.from_numpy(rng.random((30, 4)) < 0.4)
    tuner = ThresholdTuner()
    for i in range(0, 30, 7):
        tuner.update(probs[i : i + 7], target[i : i + 7])
    assert torch.equal(tuner.compute(), tune_thresholds(probs, target))


@pytest.fixture
def fitted(tmp_path):
    """One epoch on the polyphonic synthetic set: ckpt/best.ckpt."""
    root = tmp_path / "poly"
    assert main(_fit_args(root, 1)) == 0
    return root


def test_thresholds_tuned_on_validation_round_trip_and_drive_predict(fitted, tmp_path, capsys):
    import json
    from pathlib import Path

    from audiocls.data.synthetic import SyntheticDataModule
    from audiocls.training.checkpoints import load_checkpoint
    from tests.conftest import tiny_frontend_config

    ckpt = torch.load("ckpt/best.ckpt", weights_only=True)
    assert bool(ckpt["state_dict"]["thresholds_tuned"])
    metrics = json.loads(next(Path("runs").rglob("metrics.json")).read_text())  # test F1 at the tuned thresholds
    # ... which are sklearn's F1 of the final weights' test scores at the final thresholds, computed here
    final = torch.load("ckpt/last.ckpt", weights_only=True)["state_dict"]["thresholds"].numpy()
    probs, target = split_scores("ckpt/last.ckpt", fitted)
    tuned = sklearn_tagging_figures(probs, target, final)
    assert not (final == THRESHOLD).all()  # tuned: F1 at 0.5 would be another figure
    for key in ("f1_micro", "f1_macro"):
        assert metrics[f"test/{key}_tuned"] == pytest.approx(tuned[key], abs=1e-6), key
    loaded = load_checkpoint("ckpt/best.ckpt")
    stored = loaded.model.thresholds
    assert torch.equal(stored, ckpt["state_dict"]["thresholds"])
    # the stored thresholds are those the validation split's outputs give (the same weights, eval mode)
    dm = SyntheticDataModule(fitted, **POLY, batch_size=4, frontend=tiny_frontend_config())
    dm.setup("fit")
    probs, target = [], []
    with torch.no_grad():
        for batch in dm.val_dataloader():
            spec, y = dm.on_after_batch_transfer(batch, 0)
            probs.append(loaded.model(spec).sigmoid())
            target.append(y)
    assert torch.allclose(stored, tune_thresholds(torch.cat(probs), torch.cat(target)), atol=1e-5)

    # predict: the checkpoint's per-class thresholds unless --threshold is given; here made extreme so that
    # only class 0 can pass them
    ckpt["state_dict"]["thresholds"] = torch.tensor([0.0, 1.01, 1.01, 1.01])
    torch.save(ckpt, tmp_path / "edited.ckpt")
    wav = sorted((fitted / "audio").glob("*.wav"))[0]
    capsys.readouterr()
    args = ["predict", "--ckpt_path", str(tmp_path / "edited.ckpt"), "--files", str(wav), "--format", "json"]
    assert main(args) == 0
    out = capsys.readouterr()
    assert "tuned on the validation split" in out.err and "chirp_up 1.010" in out.err
    assert [t["label"] for t in json.loads(out.out)[0]["top"]] == ["tone"]
    assert main([*args, "--threshold", "0"]) == 0  # an explicit threshold overrides: every label
    out = capsys.readouterr()
    assert "0.0 for every label (--threshold)" in out.err and len(json.loads(out.out)[0]["top"]) == 4


def test_checkpoint_without_thresholds_loads_with_the_default(fitted, tmp_path, capsys):
    from audiocls.training.checkpoints import load_checkpoint

    ckpt = torch.load("ckpt/best.ckpt", weights_only=True)
    del ckpt["state_dict"]["thresholds"], ckpt["state_dict"]["thresholds_tuned"]
    torch.save(ckpt, tmp_path / "old.ckpt")
    loaded = load_checkpoint(tmp_path / "old.ckpt")
    assert not bool(loaded.model.thresholds_tuned) and torch.all(loaded.model.thresholds == THRESHOLD)
    wav = sorted((fitted / "audio").glob("*.wav"))[0]
    capsys.readouterr()
    assert main(["predict", "--ckpt_path", str(tmp_path / "old.ckpt"), "--files", str(wav)]) == 0
    assert "no tuned thresholds" in capsys.readouterr().err
