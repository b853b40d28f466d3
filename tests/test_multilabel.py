"""Multi-label tagging: BCE loss and mixup on multi-hot targets, the polyphonic synthetic set, mAP, predict."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from audiocls.cli import main
from audiocls.data.synthetic import SyntheticDataModule
from audiocls.errors import ConfigError, DataError
from audiocls.models.classifier import AudioClassifier
from audiocls.models.multilabel import multilabel_loss
from tests.conftest import TINY_FRONTEND

POLY = dict(num_classes=4, clips_per_fold=3, seconds=1.0, sample_rate=8000, max_sources=3, num_workers=0)


def test_label_smoothing_moves_binary_targets_towards_one_half():
    logits, target = torch.randn(3, 4), torch.randint(0, 2, (3, 4)).float()
    want = F.binary_cross_entropy_with_logits(logits, target * 0.8 + 0.1)
    assert torch.allclose(multilabel_loss(logits, target, 0.2), want)


def test_mixup_loss_equals_bce_on_mixed_multi_hot_targets():
    model = AudioClassifier("test_resnet", num_classes=4, task="multilabel")
    logits, y, y_b, lam = torch.randn(5, 4), torch.eye(4)[[0, 1, 2, 3, 0]], torch.eye(4)[[1, 1, 0, 2, 3]], 0.3
    mixed = lam * model._loss(logits, y) + (1 - lam) * model._loss(logits, y_b)
    assert torch.allclose(mixed, multilabel_loss(logits, lam * y + (1 - lam) * y_b))


def test_multilabel_outputs_are_independent_sigmoids():
    model = AudioClassifier("test_resnet", num_classes=5, task="multilabel").eval()
    spec = torch.randn(2, 3, 32, 64)
    probs = model.predict_step(spec, 0)
    assert torch.allclose(probs, model(spec).sigmoid())
    assert not torch.allclose(probs.sum(-1), torch.ones(2))


def test_unknown_task_is_refused():
    with pytest.raises(ConfigError, match="model.task"):
        AudioClassifier("test_resnet", num_classes=3, task="regression")


def test_polyphonic_synthetic_set_has_multi_hot_targets(tmp_path):
    dm = SyntheticDataModule(tmp_path / "poly", **POLY)
    assert dm.task == "multilabel"
    dm.prepare_data()
    clips = dm.list_clips()
    counts = [len(c.labels) for c in clips]
    assert min(counts) == 1 and max(counts) > 1 and max(counts) <= 3
    assert all(c.label == c.labels[0] and len(set(c.labels)) == len(c.labels) for c in clips)
    dm.setup("fit")
    wave, y = dm.splits["train"][0]
    assert y.shape == (4,) and y.dtype == torch.float32 and set(y.tolist()) <= {0.0, 1.0} and y.sum() >= 1
    assert SyntheticDataModule(tmp_path / "single", num_classes=4).task == "multiclass"


def test_max_sources_out_of_range_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="max_sources"):
        SyntheticDataModule(tmp_path / "x", num_classes=3, max_sources=4)


def _fit_args(root: Path, epochs: int, extra: list[str] = ()) -> list[str]:
    return [
        "fit",
        "--seed_everything=0",
        "--trainer.accelerator=cpu",
        "--trainer.devices=1",
        "--trainer.enable_progress_bar=false",
        "--trainer.enable_model_summary=false",
        f"--trainer.max_epochs={epochs}",
        "--trainer.logger.init_args.save_dir=runs",
        "--checkpoint.dirpath=ckpt",
        "--model.backbone=test_resnet",
        "--data=audiocls.data.synthetic.SyntheticDataModule",
        f"--data.root={root}",
        *[f"--data.{k}={v}" for k, v in POLY.items()],
        "--data.batch_size=4",
        f"--data.frontend={json.dumps(TINY_FRONTEND)}",
        *extra,
    ]


def split_scores(ckpt: str | Path, root: Path, split: str = "test"):
    """(sigmoid scores (N, K), multi-hot targets (N, K)) as numpy, of the checkpoint's model (eval mode) on a split
    of the :data:`POLY` set at ``root``, computed here from the datamodule's batches."""
    import numpy as np

    from audiocls.training.checkpoints import load_checkpoint
    from tests.conftest import tiny_frontend_config

    model = load_checkpoint(ckpt).model.eval()
    dm = SyntheticDataModule(root, **POLY, batch_size=4, frontend=tiny_frontend_config())
    dm.setup("fit")
    probs, target = [], []
    with torch.no_grad():
        for batch in getattr(dm, f"{split}_dataloader")():
            spec, y = dm.on_after_batch_transfer(batch, 0)
            probs.append(model(spec).double().sigmoid())
            target.append(y)
    return torch.cat(probs).numpy(), torch.cat(target).numpy().astype(np.int64)


def sklearn_tagging_figures(probs, target, thresholds=0.5) -> dict[str, float]:
    """mAP over the classes with positives, F1 micro/macro at ``thresholds``, the label-frequency baseline."""
    from sklearn.metrics import average_precision_score, f1_score

    present = target.sum(0) > 0
    pred = probs >= thresholds
    return {
        "mAP": float(average_precision_score(target[:, present], probs[:, present], average="macro")),
        "f1_micro": float(f1_score(target, pred, average="micro", zero_division=0)),
        "f1_macro": float(f1_score(target, pred, average="macro", zero_division=0)),
        "mAP_baseline": float(target.mean(0)[present].mean()),
    }


def test_multilabel_fit_monitors_map_and_predict_thresholds(tmp_path, capsys):
    root = tmp_path / "poly"
    assert main(_fit_args(root, 1, ["--model.mixup_alpha=0.4"])) == 0
    metrics = json.loads(next(Path("runs").rglob("metrics.json")).read_text())
    # the test figures are sklearn's on the final weights' scores of the test split (fold 1: 4 classes x 3 clips)
    probs, target = split_scores("ckpt/last.ckpt", root)
    assert target.shape == (12, 4)
    for key, want in sklearn_tagging_figures(probs, target).items():
        assert metrics[f"test/{key}"] == pytest.approx(want, abs=1e-5), key
    assert any(k.startswith("test/ap_class/") for k in metrics) and "test/acc" not in metrics
    ckpt = torch.load("ckpt/best.ckpt", weights_only=False)  # saved: val/mAP is the monitor, not val/acc
    assert any("val/mAP" in k for k in ckpt["callbacks"])
    assert ckpt["hyper_parameters"]["task"] == "multilabel"
    wav = sorted((root / "audio").glob("*.wav"))[0]
    capsys.readouterr()
    assert main(["predict", "--ckpt_path", "ckpt/best.ckpt", "--files", str(wav), "--threshold", "0"]) == 0
    assert len(capsys.readouterr().out.strip().splitlines()) == 1 + 4  # threshold 0: every label, with its score
    assert main(["predict", "--ckpt_path", "ckpt/best.ckpt", "--files", str(wav), "--threshold", "1"]) == 0
    assert "no label over the threshold" in capsys.readouterr().out


@pytest.mark.slow
def test_short_multilabel_fit_beats_the_label_frequency_baseline(tmp_path):
    root = tmp_path / "poly"
    extra = ["--data.clips_per_fold=8", "--model.optimizer=AdamW", "--model.optimizer.lr=0.003"]
    assert main(_fit_args(root, 8, extra)) == 0
    metrics = json.loads(next(Path("runs").rglob("metrics.json")).read_text())
    print(f"test/mAP {metrics['test/mAP']:.3f} vs label-frequency baseline {metrics['test/mAP_baseline']:.3f}")
    assert metrics["test/mAP"] > metrics["test/mAP_baseline"] + 0.15, metrics


def test_csv_manifest_with_several_labels_per_row_is_multilabel(tmp_path):
    import numpy as np
    import soundfile as sf

    from audiocls.data.folder import CSVDataModule

    rows = ["path,label"]
    for i in range(20):
        sf.write(tmp_path / f"{i}.wav", np.zeros(800, np.float32), 8000)
        rows.append(f"{i}.wav,{['dog', 'rain;dog', 'rain', 'bird;rain;dog'][i % 4]}")
    (tmp_path / "m.csv").write_text("\n".join(rows) + "\n")
    dm = CSVDataModule(tmp_path / "m.csv", sample_rate=8000, clip_seconds=0.1, num_folds=2, batch_size=2)
    assert dm.task == "multilabel" and dm.class_names == ["bird", "dog", "rain"]
    clips = {c.path.name: c for c in dm.list_clips()}
    assert clips["3.wav"].labels == (0, 2, 1) and clips["3.wav"].label == 0
    assert clips["3.wav"].multi_hot(3).tolist() == [1.0, 1.0, 1.0] and clips["2.wav"].multi_hot(3).tolist() == [0, 0, 1]
    (tmp_path / "single.csv").write_text("path,label\n0.wav,dog\n1.wav,rain\n2.wav,dog\n3.wav,rain\n")
    assert CSVDataModule(tmp_path / "single.csv", sample_rate=8000, num_folds=2).task == "multiclass"


def test_fold_metrics_of_multi_hot_labels_are_map_and_f1():
    import numpy as np

    from audiocls.models.task import get_task

    fold_metrics = get_task("multilabel").score
    labels = np.array([[1, 0, 1], [0, 1, 0], [1, 1, 0], [0, 0, 0]])
    perfect = fold_metrics(labels * 0.9 + 0.05, labels)
    assert perfect["mAP"] == pytest.approx(1) and perfect["f1_micro"] == pytest.approx(1)
    wrong = fold_metrics(1 - (labels * 0.9 + 0.05), labels)
    assert wrong["mAP"] < 0.7 and wrong["f1_micro"] == 0


def test_export_metadata_names_the_sigmoid(tmp_path):
    from audiocls.commands.export import metadata
    from audiocls.training.checkpoints import LoadedModel

    model = AudioClassifier("test_resnet", num_classes=3, task="multilabel")
    loaded = LoadedModel(model, None, 8000, 8000, model.class_names, tmp_path / "x.ckpt")
    meta = metadata(loaded)
    assert meta["task"] == "multilabel" and meta["activation"] == "sigmoid"


def _fake_fsd50k(root: Path) -> Path:
    """A release tree in the FSD50K layout: 3 classes, 6 dev train + 2 dev val + 3 eval clips of silence-ish noise."""
    import numpy as np
    import soundfile as sf

    gt = root / "FSD50K.ground_truth"
    for d in (gt, root / "FSD50K.dev_audio", root / "FSD50K.eval_audio"):
        d.mkdir(parents=True)
    (gt / "vocabulary.csv").write_text("0,Bark,/m/05tny_\n1,Rain,/m/06mb1\n2,Speech,/m/09x0r\n")
    dev = ["fname,labels,mids,split"]
    tags = ['"Bark,Rain"', "Rain", "Speech", '"Speech,Bark"', "Bark", '"Rain,Speech,Bark"', "Rain", "Bark"]
    for i, tag in enumerate(tags):
        dev.append(f"{100 + i},{tag},x,{'val' if i >= 6 else 'train'}")
        sf.write(root / "FSD50K.dev_audio" / f"{100 + i}.wav", np.random.randn(4000).astype("float32") * 0.1, 8000)
    (gt / "dev.csv").write_text("\n".join(dev) + "\n")
    ev = ["fname,labels,mids", '7,"Rain,Bark",x', "8,Speech,x", "9,Bark,x"]
    for i in (7, 8, 9):
        sf.write(root / "FSD50K.eval_audio" / f"{i}.wav", np.random.randn(4000).astype("float32") * 0.1, 8000)
    (gt / "eval.csv").write_text("\n".join(ev) + "\n")
    return root


def test_fsd50k_official_splits_and_multi_hot_targets(tmp_path):
    from audiocls.data.fsd50k import FSD50KDataModule

    dm = FSD50KDataModule(_fake_fsd50k(tmp_path / "FSD50K"), sample_rate=8000, clip_seconds=0.5, batch_size=2)
    assert dm.task == "multilabel" and dm.class_names == ["Bark", "Rain", "Speech"]
    dm.setup("fit")
    assert {k: len(v) for k, v in dm.splits.items()} == {"train": 6, "val": 2, "test": 3}
    names = [Path(dm.splits["test"].cache.files[i]).name for i in dm.splits["test"].indices]
    assert names == ["7.wav", "8.wav", "9.wav"]
    assert dm.splits["test"][0][1].tolist() == [1.0, 1.0, 0.0]  # "Rain,Bark"
    assert dm.splits["train"][5][1].tolist() == [1.0, 1.0, 1.0]


def test_fsd50k_missing_ground_truth_names_the_layout(tmp_path):
    from audiocls.data.fsd50k import FSD50KDataModule

    (tmp_path / "FSD50K").mkdir()
    with pytest.raises(DataError, match="FSD50K.ground_truth/dev.csv"):
        FSD50KDataModule(tmp_path / "FSD50K")


#: bf16 logits 1/4 apart: their float32 sigmoids are distinct (0.99331, 0.99478, 0.99593, 0.99682), their bf16
#: sigmoids are not (bf16 steps by 2**-8 = 0.0039 below 1: 0.99219, then 0.99609 three times)
BF16_LOGITS = torch.tensor([5.0, 5.25, 5.5, 5.75], dtype=torch.bfloat16)
BF16_TARGET = torch.tensor([0, 1, 0, 1])


def _bf16_scored(model: AudioClassifier, monkeypatch, logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The model gives ``logits`` (4, 2), bf16, for any input; a batch of 4 clips with :data:`BF16_TARGET` in both
    classes."""
    monkeypatch.setattr(model, "forward", lambda spec: logits)
    return torch.zeros(4, 3, 32, 64), BF16_TARGET[:, None].repeat(1, 2).float()


def test_ap_and_thresholds_of_bf16_logits_are_those_of_float32_scores(monkeypatch):
    """AP and tuned thresholds come from float32 sigmoids: bf16 ones tie and change both."""
    from sklearn.metrics import average_precision_score

    model = AudioClassifier("test_resnet", num_classes=2, task="multilabel")
    assert len(set(BF16_LOGITS.sigmoid().tolist())) == 2 and len(set(BF16_LOGITS.float().sigmoid().tolist())) == 4
    batch = _bf16_scored(model, monkeypatch, BF16_LOGITS[:, None].repeat(1, 2))
    model.test_step(batch, 0)
    model.validation_step(batch, 0)

    # ranked 5.75 (+), 5.5 (-), 5.25 (+), 5.0 (-): precision 1/1 and 2/3 at the two hits, AP = (1 + 2/3) / 2;
    # with the bf16 tie of the top three it would be 2/3
    want = (1 + 2 / 3) / 2
    assert average_precision_score(BF16_TARGET.numpy(), BF16_LOGITS.float().numpy()) == pytest.approx(want)
    assert model.test_ap.compute().tolist() == pytest.approx([want, want], abs=1e-6)
    assert float(model.test_metrics.compute()["test/mAP"]) == pytest.approx(want, abs=1e-6)
    assert float(model.val_metrics.compute()["val/mAP"]) == pytest.approx(want, abs=1e-6)
    # best F1 keeps the top three (2 hits: F1 0.8); the threshold lies midway between the 3rd and 4th scores
    third, fourth = (float(torch.tensor(v).sigmoid()) for v in (5.25, 5.0))
    assert model.threshold_tuner.compute().tolist() == pytest.approx([(third + fourth) / 2] * 2, abs=1e-6)


@pytest.mark.parametrize("task", ["multiclass", "multilabel"])
def test_probabilities_of_bf16_logits_are_float32(task, monkeypatch):
    model = AudioClassifier("test_resnet", num_classes=2, task=task)
    logits = torch.stack([BF16_LOGITS, torch.zeros_like(BF16_LOGITS)], 1)  # softmax of (x, 0) is sigmoid(x)
    spec, _ = _bf16_scored(model, monkeypatch, logits)
    probs = model.predict_step(spec, 0)
    assert probs.dtype == torch.float32
    assert probs[:, 0].tolist() == pytest.approx(BF16_LOGITS.double().sigmoid().tolist(), abs=1e-7)


def test_reported_map_and_f1_are_sklearns_on_imbalanced_class_sorted_data():
    """Issue 25: val/test mAP is the macro AP (the mean over classes, as sklearn's), F1 micro and macro at 0.5, the
    per-class AP, the baseline and the F1 at the tuned thresholds, all as sklearn computes them on the same scores,
    on tags whose frequencies differ (30, 12, 5 and 2 of 40 clips), the clips sorted by their first tag."""
    import numpy as np
    from sklearn.metrics import average_precision_score, f1_score

    from tests.test_model import fixed_output_run

    rng = np.random.default_rng(0)
    n, counts = 40, [30, 12, 5, 2]
    target = np.zeros((n, 4), dtype=np.int64)
    for k, c in enumerate(counts):
        target[rng.choice(n, c, replace=False), k] = 1
    first = np.where(target.any(1), target.argmax(1), 4)  # a clip without a tag goes last
    target = target[np.argsort(first, kind="stable")]  # sorted by first tag: class 0's clips first
    logits = rng.standard_normal((n, 4)) + np.where(target == 1, [2.0, 1.0, 0.3, 0.0], 0.0)
    probs = 1 / (1 + np.exp(-logits))
    sk_map = average_precision_score(target, probs, average="macro")
    assert abs(sk_map - average_precision_score(target, probs, average="micro")) > 0.05  # micro and macro differ
    f1 = {a: f1_score(target, probs >= 0.5, average=a, zero_division=0) for a in ("micro", "macro")}
    assert abs(f1["micro"] - f1["macro"]) > 0.05

    model = AudioClassifier("test_resnet", num_classes=4, task="multilabel", class_names=list("abcd"))
    got = fixed_output_run(model, torch.from_numpy(logits), torch.from_numpy(target).float())
    for stage in ("val", "test"):
        assert got[f"{stage}/mAP"] == pytest.approx(sk_map, abs=1e-5), stage
        for a in ("micro", "macro"):
            assert got[f"{stage}/f1_{a}"] == pytest.approx(f1[a], abs=1e-6), (stage, a)
    assert got["val/mAP_best"] == pytest.approx(sk_map, abs=1e-5)
    ap = average_precision_score(target, probs, average=None)
    for k, name in enumerate("abcd"):
        assert got[f"test/ap_class/{name}"] == pytest.approx(ap[k], abs=1e-5), name
    assert got["test/mAP_baseline"] == pytest.approx(np.mean(np.array(counts) / n))
    thresholds = model.thresholds.numpy()  # tuned on the validation pass over the same clips
    assert bool(model.thresholds_tuned) and not np.allclose(thresholds, 0.5)
    for a in ("micro", "macro"):
        want = f1_score(target, probs >= thresholds, average=a, zero_division=0)
        assert got[f"test/f1_{a}_tuned"] == pytest.approx(want, abs=1e-6), a
    assert f1_score(target, probs >= thresholds, average="macro") > f1["macro"] + 0.05  # not the F1 at 0.5
