"""A fit killed with SIGKILL mid-epoch resumes with ``--ckpt_path last`` and ends exactly where an uninterrupted
run ends; two runs of one config give identical numbers; every run records its seed, versions and commit."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from audiocls.cli import main

#: CPU, one process, a fixed seed: the resumed run must match to float round-off (in practice bit for bit)
TOLERANCE = 1e-6
EPOCHS = 2
STALL = """
import time
from pathlib import Path

import lightning as L


class StallAt(L.Callback):
    '''Write a marker and sleep at one training step, so the test can SIGKILL the run mid-epoch.'''

    def __init__(self, epoch: int, batch: int, marker: str):
        self.epoch, self.batch, self.marker = epoch, batch, marker

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.current_epoch == self.epoch and batch_idx == self.batch:
            Path(self.marker).write_text(str(batch_idx))
            print("STALLED", flush=True)
            time.sleep(600)
"""


def _fit_args(tiny_args: list[str], *extra: str) -> list[str]:
    return ["fit", *tiny_args, f"--trainer.max_epochs={EPOCHS}", "--trainer.num_sanity_val_steps=1", *extra]


def _cli(args: list[str], cwd: Path, **kwargs) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(cwd), os.environ.get("PYTHONPATH", "")])}
    return subprocess.Popen(
        [sys.executable, "-m", "audiocls.cli", *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        **kwargs,
    )


def _weights(ckpt: Path) -> dict[str, torch.Tensor]:
    return torch.load(ckpt, map_location="cpu", weights_only=True)["state_dict"]


def _assert_same_run(a: Path, b: Path) -> None:
    """Same test metrics and the same final weights, within :data:`TOLERANCE`."""
    ma, mb = (json.loads((d / "metrics.json").read_text()) for d in (a, b))
    assert ma.keys() == mb.keys() and "test/acc" in ma
    for key in ma:
        assert mb[key] == pytest.approx(ma[key], abs=TOLERANCE), (key, ma, mb)
    wa, wb = _weights(a / "checkpoints" / "last.ckpt"), _weights(b / "checkpoints" / "last.ckpt")
    assert wa.keys() == wb.keys()
    worst = max((wa[k].double() - wb[k].double()).abs().max().item() for k in wa if wa[k].is_floating_point())
    assert worst <= TOLERANCE, f"final weights differ by {worst}"


@pytest.mark.slow
def test_sigkill_mid_epoch_then_resume_matches_uninterrupted(tiny_args, tmp_path):
    # the reference: an uninterrupted run, in-process, in its own folder
    (ref := tmp_path / "ref").mkdir()
    os.chdir(ref)
    assert main(_fit_args(tiny_args)) == 0
    ref_run = ref / "runs" / "audiocls" / "version_0"

    # the same run as the `audiocls` command, killed with SIGKILL in the middle of the last epoch
    (work := tmp_path / "work").mkdir()
    (work / "stall_callback.py").write_text(STALL)
    marker = work / "stalled"
    stall = {
        "class_path": "stall_callback.StallAt",
        "init_args": {"epoch": EPOCHS - 1, "batch": 3, "marker": str(marker)},
    }
    proc = _cli(_fit_args(tiny_args, f"--trainer.callbacks+={json.dumps(stall)}"), work, start_new_session=True)
    seen = []
    for line in proc.stdout:  # blocks until the callback stalls the run (or the run ends)
        if line.strip() == "STALLED":
            break
        seen.append(line)
    else:
        pytest.fail(f"the run ended before it could be killed:\n{''.join(seen)[-3000:]}")
    assert marker.read_text() == "3"  # stalled at batch 3 of the last epoch, as asked
    run = work / "runs" / "audiocls" / "version_0"
    last = run / "checkpoints" / "last.ckpt"
    assert torch.load(last, weights_only=True)["epoch"] == EPOCHS - 2  # the checkpoint of the epoch before
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    assert not (run / "metrics.json").exists()
    assert not list(run.rglob("*.partial")), "a kill between saves leaves no temporary file"

    # one command resumes it, in the same folder
    proc = _cli(_fit_args(tiny_args, "--ckpt_path=last"), work)
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out[-3000:]
    assert not (work / "runs" / "audiocls" / "version_1").exists(), "the resume must continue the killed run's folder"
    assert (run / "metrics.before-resume-1.csv").is_file() and (run / "metrics.csv").is_file()
    info = json.loads((run / "runinfo.json").read_text())
    assert info["ckpt_path"] == str(last) and info["earlier"][0]["ckpt_path"] is None
    _assert_same_run(ref_run, run)


@pytest.mark.slow
def test_two_runs_of_one_config_are_identical(tiny_args, tmp_path):
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        os.chdir(tmp_path / name)
        assert main(["fit", *tiny_args, "--trainer.max_epochs=2", "--trainer.deterministic=true"]) == 0
    _assert_same_run(*(tmp_path / n / "runs" / "audiocls" / "version_0" for n in ("a", "b")))


def _git(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", *args], cwd=Path(__file__).resolve().parents[1], capture_output=True, text=True)


def test_runinfo_records_seed_versions_and_commit(tiny_args, tmp_path):
    before = _git("rev-parse", "HEAD").stdout.strip()
    args = [
        "--seed_everything=123",
        "--trainer.max_epochs=1",
        "--trainer.limit_train_batches=2",
        "--trainer.deterministic=false",  # torch's default: nothing leaks into later tests
        "--test_after_fit=true",
    ]
    assert main(["fit", *tiny_args, *args]) == 0
    info = json.loads((tmp_path / "runs" / "audiocls" / "version_0" / "runinfo.json").read_text())
    assert "earlier" not in info  # the fit's own test stage is not a second run (it was recorded as one)
    assert info["seed"] == 123 and info["subcommand"] == "fit" and info["ckpt_path"] is None
    assert [type(x) for x in info["load_average"]] == [float] * 3  # the load the run started under
    assert info["deterministic"] is False  # the trainer's setting, as configured (None when not given)
    for package in ("torch", "torchaudio", "timm", "lightning", "python"):
        assert info["versions"][package], package
    assert info["versions"]["torch"] == torch.__version__
    if before:  # a git checkout: the commit recorded is HEAD at the time of the run (others may commit meanwhile)
        commit = info["git"]["commit"]
        assert _git("merge-base", "--is-ancestor", before, commit).returncode == 0, (before, commit)
        assert _git("merge-base", "--is-ancestor", commit, "HEAD").returncode == 0, commit
        assert isinstance(info["git"]["dirty"], bool)


def test_ckpt_path_last_without_a_run_refuses_test(tiny_args, capsys):
    assert main(["test", *tiny_args, "--ckpt_path=last"]) == 2
    err = capsys.readouterr().err
    assert "ckpt_path=last" in err and "runs/audiocls/version_*/checkpoints/last.ckpt" in err


def _trainer_as_torchrun_rank(monkeypatch, save_dir: Path, rank: int):
    """A 2-process DDP trainer on the CPU as process ``rank`` of ``torchrun --nproc-per-node 2`` builds it: the
    environment torchrun sets, no process group yet (as when ``--ckpt_path last`` is resolved)."""
    from lightning import Trainer
    from lightning.pytorch.loggers import CSVLogger
    from lightning.pytorch.utilities.rank_zero import rank_zero_only
    from lightning_utilities.core.rank_zero import rank_zero_only as utils_rank_zero_only

    for holder in (rank_zero_only, utils_rank_zero_only):  # the DDP strategy sets them; later tests need rank 0
        monkeypatch.setattr(holder, "rank", getattr(holder, "rank", 0), raising=False)
    env = {"RANK": rank, "LOCAL_RANK": rank, "WORLD_SIZE": 2, "LOCAL_WORLD_SIZE": 2, "GROUP_RANK": 0}
    env.update(TORCHELASTIC_RUN_ID="test", MASTER_ADDR="127.0.0.1", MASTER_PORT=29500)
    for key, value in env.items():
        monkeypatch.setenv(key, str(value))
    trainer = Trainer(
        accelerator="cpu", devices=2, strategy="ddp", logger=CSVLogger(save_dir, name="audiocls"),
        enable_progress_bar=False, enable_model_summary=False,
    )  # fmt: skip
    assert trainer.global_rank == rank and trainer.world_size == 2
    return trainer


def test_ckpt_path_last_under_torchrun_moves_metrics_csv_on_rank_0_only(tmp_path, monkeypatch):
    from audiocls.training.checkpoints import resolve_last_checkpoint

    run = tmp_path / "runs" / "audiocls" / "version_0"
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "last.ckpt").write_bytes(b"weights")
    (run / "metrics.csv").write_text("epoch,train/loss\n0,1.5\n")
    last = str((run / "checkpoints" / "last.ckpt").absolute())

    # every process resolves 'last' at once; rank 1 finds the checkpoint and continues the folder, moves nothing
    rank1 = _trainer_as_torchrun_rank(monkeypatch, tmp_path / "runs", 1)
    assert resolve_last_checkpoint(rank1, "last", resume=True) == last
    assert rank1.logger.version == "version_0"
    assert (run / "metrics.csv").is_file() and not list(run.glob("metrics.before-resume-*.csv"))

    rank0 = _trainer_as_torchrun_rank(monkeypatch, tmp_path / "runs", 0)
    assert resolve_last_checkpoint(rank0, "last", resume=True) == last
    assert rank0.logger.version == "version_0"
    assert not (run / "metrics.csv").exists()
    assert (run / "metrics.before-resume-1.csv").read_text() == "epoch,train/loss\n0,1.5\n"

    # a killed run that logged nothing has no metrics.csv to keep: resolving again moves nothing, raises nothing
    rank0 = _trainer_as_torchrun_rank(monkeypatch, tmp_path / "runs", 0)
    assert resolve_last_checkpoint(rank0, "last", resume=True) == last
    assert sorted(p.name for p in run.glob("metrics*.csv")) == ["metrics.before-resume-1.csv"]


#: two gloo processes as torchrun starts them: each seeds itself differently, the callback writes one checkpoint
#: (every rank takes part, rank 0 saves it, as in Trainer.save_checkpoint), then each rank scrambles its random
#: state, restores the checkpoint and records what it draws next
RNG_RANKS = """
import json
import sys
from pathlib import Path
from types import SimpleNamespace

import torch
import torch.distributed as dist

from audiocls.training.record import RandomStateCallback
from tests.test_resume import draws, seed_all

dist.init_process_group("gloo")
rank, ckpt = dist.get_rank(), Path(sys.argv[1])
seed_all(10 + rank)
saving = RandomStateCallback()
saving.setup(SimpleNamespace(global_rank=rank, world_size=2, ckpt_path="given"), None, "fit")  # no re-seed
state = saving.state_dict()
if rank == 0:
    torch.save(state, ckpt)
dist.barrier()
seed_all(99)  # the resumed process starts from its seed
resumed = RandomStateCallback()
resumed.setup(SimpleNamespace(global_rank=rank, world_size=2, ckpt_path="last"), None, "fit")
resumed.load_state_dict(torch.load(ckpt, weights_only=True))
ckpt.with_suffix(f".rank{rank}.json").write_text(json.dumps(draws()))
dist.destroy_process_group()
"""


def seed_all(seed: int) -> None:
    import random

    import numpy as np

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def draws() -> list[float]:
    """The next draw of Python's, NumPy's and torch's global generators."""
    import random

    import numpy as np

    return [random.random(), float(np.random.rand()), float(torch.rand(()))]


def _after_seed(seed: int) -> list[float]:
    seed_all(seed)
    return draws()


def test_each_rank_resumes_its_own_random_state(tmp_path, caplog):
    from types import SimpleNamespace

    from audiocls.training.record import RandomStateCallback

    root = Path(__file__).resolve().parents[1]
    (tmp_path / "rng_ranks.py").write_text(RNG_RANKS)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")])}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2"]
    cmd += [str(tmp_path / "rng_ranks.py"), str(tmp_path / "rng.ckpt")]
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    got = [json.loads((tmp_path / f"rng.rank{r}.json").read_text()) for r in range(2)]
    assert got[0] == _after_seed(10) and got[1] == _after_seed(11)  # each its own state, not rank 0's

    # resumed with another number of processes: the ranks the checkpoint has restore theirs, the others keep theirs
    state = torch.load(tmp_path / "rng.ckpt", weights_only=True)
    for rank, world_size, want in [(0, 1, _after_seed(10)), (0, 3, _after_seed(10)), (2, 3, _after_seed(77))]:
        seed_all(77)
        callback = RandomStateCallback()
        callback.setup(SimpleNamespace(global_rank=rank, world_size=world_size, ckpt_path="last"), None, "fit")
        with caplog.at_level("WARNING", logger="audiocls.training.record"):
            callback.load_state_dict(state)
        assert draws() == want, (rank, world_size)
    assert "random states of 2 process(es), this run has 3" in caplog.text


def test_a_new_fit_of_several_processes_draws_per_rank(monkeypatch):
    """seed_everything seeds every rank alike: without a per-rank stream each rank drew rank 0's augmentation."""
    from types import SimpleNamespace

    from audiocls.training.record import RandomStateCallback

    def draws(rank: int, world_size: int, ckpt_path=None) -> torch.Tensor:
        torch.manual_seed(7)  # what seed_everything(7) does on every rank
        trainer = SimpleNamespace(global_rank=rank, world_size=world_size, ckpt_path=ckpt_path)
        RandomStateCallback().setup(trainer, None, "fit")
        return torch.rand(4)

    expected = {r: torch.Generator().manual_seed(7 + r) for r in (0, 1)}
    assert torch.equal(draws(0, 2), torch.rand(4, generator=expected[0]))
    assert torch.equal(draws(1, 2), torch.rand(4, generator=expected[1]))  # rank 1: its own stream
    assert torch.equal(draws(1, 1), torch.rand(4, generator=torch.Generator().manual_seed(7)))  # one process: as seeded
    # a resumed fit keeps the stream its checkpoint restores (restored after setup, so setup must not re-seed)
    assert torch.equal(draws(1, 2, ckpt_path="last.ckpt"), torch.rand(4, generator=torch.Generator().manual_seed(7)))
