"""How a study runs its trials: Optuna asks for a setting, the setting's fits run (one ``audiocls fit`` process per
repeat: seed x fold x ...), the mean of their validation figures is told back.

Each fit lives in ``OUT/trials/<setting key>/<repeat>/`` with ``fit.log`` and, once it has ended well,
``study_result.json``: a fit with one is never run again, so a retried or resumed trial redoes nothing finished.
``workers`` threads each run one trial at a time (the fits are the processes). A trial whose fit fails is recorded
as failed with the last lines of its log, and the study goes on. A trial cut short (Ctrl-C, a killed process, a
lost node) is failed with ``retry`` set; the next run of the study queues its setting again
(:func:`retry_interrupted`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from audiocls.commands.cv_launch import logger_args
from audiocls.commands.study_fit import RECORD, STEPS_PER_REPEAT
from audiocls.commands.study_spec import StudySpec, arg, setting_key
from audiocls.files import atomic_write_text
from audiocls.training.record import load_average

__all__ = [
    "Runner",
    "RESULT",
    "run_workers",
    "interrupt_on_sigterm",
    "retry_interrupted",
    "repeat_name",
    "fit_objective",
]

log = logging.getLogger(__name__)

RESULT = "study_result.json"
LOG = "fit.log"
#: seconds between a running trial's heartbeats (``alive``); one silent for :data:`STALE_S` is taken as lost
HEARTBEAT_S = 60.0
STALE_S = 600.0
SHORT = {"seed_everything": "seed", "data.fold": "fold"}


def repeat_name(point: dict) -> str:
    """``seed0-fold1-val_fold2``: a repeat's folder name."""
    return "-".join(f"{SHORT.get(k, k.rsplit('.', 1)[-1])}{v}" for k, v in point.items()) or "run"


def fit_objective(val: dict, epoch: str, mode: str) -> tuple[float | None, int | None]:
    """``(value, epoch)`` of the objective in a fit's per-epoch validation figures: the final or the best epoch."""
    if not val:
        return None, None
    epochs = sorted(val, key=int)
    if epoch == "final":
        return val[epochs[-1]], int(epochs[-1])
    pick = max if mode == "max" else min
    best = pick(epochs, key=lambda e: val[e])
    return val[best], int(best)


def _tail(path: Path, n: int = 5) -> str:
    try:
        lines = [ln.rstrip() for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return ""
    return "\n".join(lines[-n:])


@dataclass
class Runner:
    """One study's run: what every trial needs.

    ``fit_args`` are the base stack (``--config`` files) and the user's command-line fit overrides; ``cfg`` is the
    resolved base config (its logger and epochs); ``storage`` is what fit processes reopen.
    """

    spec: StudySpec
    out: Path
    study: object
    storage: str
    fit_args: list[str]
    cfg: dict
    monitor: str
    mode: str
    workers: int = 1
    retry_failed: bool = False
    stop: threading.Event = field(default_factory=threading.Event)
    procs: dict = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    # --- one fit -------------------------------------------------------------------------------------------------
    def fit_command(self, overrides: dict, point: dict, run_dir: Path, trial_id: int, index: int):
        """``(what a user types, what runs)``: ``audiocls fit`` on the base stack plus the setting and the repeat;
        what runs adds where the files go and the recorder."""
        user = ["fit", *self.fit_args, *(arg(k, v) for k, v in {**self.spec.search_only, **overrides}.items())]
        user += [arg(k, v) for k, v in point.items()]
        epochs = int(self.cfg.get("trainer", {}).get("max_epochs") or 1)
        recorder = {
            "class_path": "audiocls.commands.study_fit.StudyRecorder",
            "init_args": {
                "dirpath": str(run_dir), "monitor": self.monitor, "step_offset": index * STEPS_PER_REPEAT,
                **({"storage": self.storage, "study": self.study.study_name, "trial_id": trial_id,
                    "report_from": epochs // 3, "pruner": self.spec.pruner} if self.spec.pruner != "none" else {}),
            },
        }  # fmt: skip
        extra = [f"--trainer.default_root_dir={run_dir}", "--checkpoint.save_top_k=0", "--checkpoint.save_last=false"]
        extra += [f"--trainer.callbacks+={json.dumps(recorder)}", "--trainer.enable_progress_bar=false"]
        extra += logger_args(self.cfg, run_dir, f"{self.spec.name}-{run_dir.parent.name}-{run_dir.name}",
                             self.spec.name)  # fmt: skip
        return user, [sys.executable, "-m", "audiocls.cli", *user, *extra]

    def run_fit(self, trial, overrides: dict, point: dict, run_dir: Path, index: int) -> dict:
        """One fit: its ``study_result.json`` (read back when it exists); ``status`` done / pruned / failed /
        interrupted."""
        done = run_dir / RESULT
        if done.is_file():
            return json.loads(done.read_text())
        shutil.rmtree(run_dir, ignore_errors=True)  # a fit cut short starts again from nothing
        run_dir.mkdir(parents=True)
        user, cmd = self.fit_command(overrides, point, run_dir, trial._trial_id, index)
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        if self.workers > 1:
            env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // self.workers))
        t0, beat, load0 = time.monotonic(), time.monotonic(), load_average()
        started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        with (run_dir / LOG).open("a") as fh:
            fh.write(f"$ audiocls {shlex.join(user)}\n")
            fh.flush()
            proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env)
            with self.lock:
                self.procs[proc.pid] = proc
            try:
                while proc.poll() is None:
                    time.sleep(0.5)
                    if time.monotonic() - beat > HEARTBEAT_S:
                        beat = time.monotonic()
                        trial.set_user_attr("alive", time.time())
            finally:
                with self.lock:
                    self.procs.pop(proc.pid, None)
        result = {"repeat": point, "command": "audiocls " + shlex.join(user), "wall_s": round(time.monotonic() - t0, 1),
                  "started": started, "load_before": load0, "load_after": load_average()}  # fmt: skip
        record = run_dir / RECORD
        if self.stop.is_set() or proc.returncode in (-signal.SIGINT, 130, -signal.SIGTERM, -signal.SIGKILL):
            return {**result, "status": "interrupted"}
        if proc.returncode != 0 or not record.is_file():
            return {**result, "status": "failed", "error": _tail(run_dir / LOG), "log": str(run_dir / LOG)}
        rec = json.loads(record.read_text())
        value, at = fit_objective(rec["val"], self.spec.epoch, self.mode)
        if value is None:
            why = (f"no {self.monitor} was logged: the fit had no validation split; give the study one (search_only: "
                   "{data.val_fold: K} or data.val_fraction)")  # fmt: skip
            return {**result, "status": "failed", "error": why, "log": str(run_dir / LOG)}
        result.update(status="pruned" if rec["pruned_at"] is not None else "done", objective=value, epoch=at,
                      val_final=fit_objective(rec["val"], "final", self.mode)[0], epochs=len(rec["val"]),
                      test=rec["test"], pruned_at=rec["pruned_at"])  # fmt: skip
        atomic_write_text(done, json.dumps(result, indent=2))
        return result

    # --- one trial -----------------------------------------------------------------------------------------------
    def run_trial(self, trial) -> None:
        """Run every repeat of the trial's setting and tell Optuna the mean objective (or pruned / failed)."""
        import optuna
        from optuna.trial import TrialState

        params = {axis.name: axis.suggest(trial) for axis in self.spec.axes}
        overrides = {k: v for axis in self.spec.axes for k, v in axis.overrides(params[axis.name]).items()}
        key = setting_key(params)
        setting_dir = self.out / "trials" / key
        setting_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(setting_dir / "setting.json", json.dumps({"params": params, "overrides": overrides}))
        for name, value in (("setting", overrides), ("key", key), ("host", socket.gethostname()),
                            ("pid", os.getpid()), ("alive", time.time())):  # fmt: skip
            trial.set_user_attr(name, value)
        log.info("trial %d: %s", trial.number, ", ".join(f"{k}={v}" for k, v in overrides.items()))
        values = []
        for index, point in enumerate(self.spec.repeat_points()):
            run_dir = setting_dir / repeat_name(point)
            result = self.run_fit(trial, overrides, point, run_dir, index)
            status = result["status"]
            if status == "interrupted":
                trial.set_user_attr("retry", "interrupted")
                self.study.tell(trial, state=TrialState.FAIL)
                return
            if status == "failed":
                trial.set_user_attr("error", result["error"])
                trial.set_user_attr("log", result["log"])
                self.study.tell(trial, state=TrialState.FAIL)
                log.error("trial %d failed (%s): %s", trial.number, run_dir, result["error"].splitlines()[-1:])
                return
            if status == "pruned":
                log.info("trial %d pruned at epoch %s of %s", trial.number, result["pruned_at"], run_dir.name)
                self.study.tell(trial, state=TrialState.PRUNED)
                return
            values.append(result["objective"])
        mean = sum(values) / len(values)
        try:
            self.study.tell(trial, mean)
        except optuna.exceptions.UpdateFinishedTrialError:  # a stale-trial cleanup failed it while it ran
            log.warning("trial %d was marked lost while running; its fits are kept", trial.number)
        log.info("trial %d: %s %.4f (mean of %d)", trial.number, self.monitor, mean, len(values))

    # --- the queue -----------------------------------------------------------------------------------------------
    def next_trial(self):
        """The next trial to run, or ``None`` when the study has run what it should."""
        from optuna.trial import TrialState

        with self.lock:
            if self.stop.is_set():
                return None
            trials = self.study.get_trials(deepcopy=False)
            waiting = any(t.state == TrialState.WAITING for t in trials)
            if self.spec.sampler == "grid":
                started = {t.system_attrs.get("grid_id") for t in trials if t.state != TrialState.WAITING}
                if not waiting and started >= set(range(self.spec.grid_size())):
                    return None
            else:
                counted = [t for t in trials if t.state != TrialState.WAITING and "retry" not in t.user_attrs]
                if not waiting and len(counted) >= self.spec.n_trials:
                    return None
            return self.study.ask()

    def work(self) -> None:
        while (trial := self.next_trial()) is not None:
            try:
                self.run_trial(trial)
            except Exception as err:  # a bug here must not leave the trial running forever
                log.exception("trial %d: %s", trial.number, err)
                with contextlib.suppress(Exception):
                    trial.set_user_attr("error", f"{type(err).__name__}: {err}")
                    self.study.tell(trial, state=__import__("optuna").trial.TrialState.FAIL)


def retry_interrupted(study, retry_failed: bool = False) -> int:
    """Queue again the settings of trials that were cut short: failed with ``retry`` set, or still RUNNING with a
    dead owner (this host, pid gone) or no heartbeat for :data:`STALE_S`. With ``retry_failed`` failed trials too.
    Returns how many were queued."""
    from optuna.trial import TrialState

    host, now, queued = socket.gethostname(), time.time(), 0
    trials = study.get_trials(deepcopy=False)
    requeued = {t.user_attrs.get("retry_of") for t in trials}  # a finished trial cannot be marked: its retry is
    for t in trials:
        if t.state == TrialState.RUNNING:
            attrs = t.user_attrs
            dead = attrs.get("host") == host and not pid_alive(attrs.get("pid"))
            if not (dead or now - attrs.get("alive", now) > STALE_S):
                continue
            # study._storage: Optuna's own RetryFailedTrialCallback marks trials through it; no public setter
            study._storage.set_trial_user_attr(t._trial_id, "retry", "lost (its process is gone)")
            study._storage.set_trial_state_values(t._trial_id, TrialState.FAIL)
        elif not (t.state == TrialState.FAIL and ("retry" in t.user_attrs or retry_failed)):
            continue
        if t.number in requeued:
            continue
        study.enqueue_trial(t.params, user_attrs={"retry_of": t.number})
        queued += 1
    return queued


def pid_alive(pid) -> bool:
    """Whether process ``pid`` of this host runs (not this process: a driver never waits on itself)."""
    if not isinstance(pid, int):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return pid != os.getpid()


def run_workers(runner: Runner) -> bool:
    """Run the study with ``runner.workers`` threads until done; returns False when Ctrl-C stopped it (the fits get
    SIGINT, their trials are failed with ``retry`` set, and the storage stays consistent)."""
    # The driver waits on events, never in Thread.join: a KeyboardInterrupt raised inside join(timeout) marks the
    # thread as stopped on Python <= 3.12 (bpo-45274's cleanup releases the thread's own lock), so the driver went
    # on and exited while its worker was still failing the trial, which stayed RUNNING in the storage.
    done = [threading.Event() for _ in range(runner.workers)]

    def work(event: threading.Event) -> None:
        try:
            runner.work()
        finally:
            event.set()

    threads = [threading.Thread(target=work, args=(e,), name=f"study-worker-{i}") for i, e in enumerate(done)]
    for t in threads:
        t.start()
    try:
        while not all(e.wait(0.5) for e in done):
            pass
    except KeyboardInterrupt:
        runner.stop.set()
        with runner.lock:
            procs = list(runner.procs.values())
        for proc in procs:  # SIGTERM: a fit started by a background driver ignores SIGINT (the shell's rule)
            with contextlib.suppress(OSError):
                proc.terminate()
        for e in done:  # each worker fails its trial (retry set) once its fit has exited
            while not e.wait(0.5):
                pass
        return False
    return True


def interrupt_on_sigterm() -> None:
    """Treat SIGTERM (``kill PID``, a cluster's preemption) as Ctrl-C, so the storage is left consistent."""

    def handler(signum, frame):
        raise KeyboardInterrupt

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, handler)
