"""Issue 15: ``fit`` through the CLI, then validate / predict / explain / export on the checkpoint that fit wrote.

Every figure a command reports is compared with the trained model itself (the ``AudioCLI`` object ``fit`` ran,
in memory, never reloaded): its logits on the split's clips, scored with sklearn. A command that reads the
checkpoint wrongly, rebuilds another frontend, or scores other clips fails here.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.metrics import accuracy_score, f1_score

from audiocls.cli import main
from audiocls.training.cli import run_cli
from tests.test_cv import _tiny


@pytest.fixture(scope="module")
def fitted(tmp_path_factory, tiny_root, cache_root):
    """One epoch of ``fit`` on the tiny set: the CLI object, its last.ckpt, and the model's logits per split."""
    work = tmp_path_factory.mktemp("fit")
    mp = pytest.MonkeyPatch()
    mp.setenv("AUDIOCLS_CACHE", str(cache_root))
    mp.chdir(work)
    try:
        args = [*_tiny(tiny_root), f"--trainer.default_root_dir={work}"]
        cli = run_cli(["fit", *args, "--trainer.max_epochs=1", "--trainer.limit_train_batches=2"])
    finally:
        mp.undo()
    dm, model = cli.datamodule, cli.model.eval()
    ckpt = next(work.rglob("last.ckpt"))
    out = {"args": args, "ckpt": ckpt, "work": work, "classes": list(model.class_names)}
    for name in ("val", "test"):
        split = dm.splits[name]
        waves = torch.stack([split[i][0] for i in range(len(split))])  # (N, T), one clip long
        with torch.no_grad():
            logits = model(dm.frontend(waves))  # (N, num_classes): the model fit trained, as it is in memory
        files = [Path(split.cache.files[i]) for i in split.indices]
        out[name] = {"waves": waves, "logits": logits, "labels": np.array(split.labels), "files": files}
    return out


def test_fit_s_test_figures_are_sklearn_s_on_the_model_s_outputs(fitted):
    metrics = json.loads(next(fitted["ckpt"].parents[1].glob("metrics.json")).read_text())
    test = fitted["test"]
    pred = test["logits"].argmax(1).numpy()
    assert len(set(test["labels"].tolist())) == 4  # every class in the fold: macro F1 is defined alike
    assert metrics["test/acc"] == pytest.approx(accuracy_score(test["labels"], pred))
    assert metrics["test/f1_macro"] == pytest.approx(f1_score(test["labels"], pred, average="macro"))


def test_validate_on_the_checkpoint_reports_the_model_s_accuracy(fitted, tmp_path):
    cli = run_cli(["validate", *fitted["args"], f"--ckpt_path={fitted['ckpt']}"])
    val = fitted["val"]
    expected = accuracy_score(val["labels"], val["logits"].argmax(1).numpy())
    assert float(cli.trainer.callback_metrics["val/acc"]) == pytest.approx(expected)


@pytest.mark.parametrize("form", ["files", "folder"])
def test_predict_on_the_checkpoint_gives_the_model_s_probabilities(fitted, tmp_path, form):
    test = fitted["test"]
    if form == "folder":
        folder = tmp_path / "clips"
        folder.mkdir()
        for f in test["files"]:
            shutil.copy(f, folder / f.name)
        inputs = [str(folder)]
    else:
        inputs = [str(f) for f in test["files"]]
    out = tmp_path / "p.json"
    assert main(["predict", f"--ckpt_path={fitted['ckpt']}", "--files", *inputs, "--format=json", "--top_k=4",
                 f"--out={out}"]) == 0  # fmt: skip
    by_name = {Path(r["file"]).name: r for r in json.loads(out.read_text())}
    probs = test["logits"].softmax(1).numpy()
    classes = fitted["classes"]
    assert len(by_name) == len(test["files"])
    for f, p in zip(test["files"], probs, strict=True):
        got = {t["label"]: t["probability"] for t in by_name[f.name]["top"]}
        assert [got[c] for c in classes] == pytest.approx(p.tolist(), abs=2e-6), f


def test_explain_on_the_checkpoint_explains_the_model_s_top_classes(fitted, tmp_path, capsys):
    test = fitted["test"]
    arrays = tmp_path / "s.npz"
    clip = test["files"][0]
    code = main(["explain", f"--ckpt_path={fitted['ckpt']}", str(clip), f"--out={tmp_path / 's.png'}", "--top_k=2",
                 f"--save_arrays={arrays}"])  # fmt: skip
    assert code == 0
    saved = np.load(arrays)
    logits = test["logits"][0]
    assert saved["targets"].tolist() == logits.argsort(descending=True)[:2].tolist()
    assert saved["probs"] == pytest.approx(logits.softmax(0).numpy(), abs=1e-5)
    assert "[0.00-1.00 s]" in capsys.readouterr().out


@pytest.mark.parametrize("fmt", ["torchscript", "onnx"])
def test_export_of_the_checkpoint_computes_the_model_s_logits(fitted, tmp_path, fmt):
    out = tmp_path / ("m.pt" if fmt == "torchscript" else "m.onnx")
    assert main(["export", f"--ckpt_path={fitted['ckpt']}", f"--format={fmt}", f"--out={out}"]) == 0
    test = fitted["test"]
    waves = test["waves"].numpy()
    if fmt == "torchscript":
        with torch.no_grad():
            logits = torch.jit.load(str(out))(test["waves"]).numpy()
    else:
        import onnxruntime as ort

        session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
        logits = session.run(None, {session.get_inputs()[0].name: waves})[0]
    expected = test["logits"].numpy()
    assert np.abs(logits - expected).max() <= 1e-3 * max(1.0, np.abs(expected).max())
    assert (logits.argmax(1) == expected.argmax(1)).all()
