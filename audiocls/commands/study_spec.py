"""What a study is: a base fit config, a search space over config keys, repeat axes, an objective (a YAML file).

    # configs/studies/partial_transfer.yaml
    config: [configs/esc10.yaml, configs/recipes/cpu.yaml]   # the base stack, as repeated --config
    search_only: {data.fold: 1, data.val_fold: 2}           # settings of the search's fits only (not of --final)
    space:                                                   # config keys (as typed after --) -> a grid or ranges
      model.optimizer.init_args.lr: {log: [1.0e-4, 1.0e-2]}  # float on a log scale; {float: [a, b]}, {int: [a, b]}
      model.backbone: {choices: [regnetx_002, mobilenetv2_100]}
      transfer:                                              # a named axis: each choice sets several keys
        choices: [{model.freeze_until: 1}, {model.reinit_from: 2}]
    seeds: [0, 1, 2]                                         # repeat axes: every setting runs each seed x fold
    folds: [1]                                               # data.fold (the test fold; recorded, never the objective)
    repeat: {data.val_fold: [2, 3]}                          # any other repeat axis
    objective: {epoch: final}                                # the task's validation key at the final (or best) epoch
    sampler: grid                                            # grid (choices only) | tpe | random
    n_trials: 20                                             # tpe/random: settings to try
    pruner: none                                             # none | median (prunes on the validation key)
    first: [{model.optimizer.init_args.lr: 1.0e-3}]          # tpe/random: settings tried first (e.g. today's)
    final: {seeds: [0, 1, 2], variants: {pretrained: {}, random: {model.pretrained: false}}}

Everything is checked here, before any trial starts; each mistake is one :class:`ConfigError` line naming the
study file, the value and the fix.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from audiocls.errors import ConfigError

__all__ = ["Axis", "StudySpec", "load_spec", "arg", "setting_key"]

SAMPLERS = ("grid", "tpe", "random")
PRUNERS = ("none", "median")
EPOCHS = ("final", "best")
TOP_KEYS = {"config", "search_only", "space", "seeds", "folds", "repeat", "objective", "sampler", "n_trials"}
TOP_KEYS |= {"pruner", "final", "sampler_seed", "name", "first"}


def arg(key: str, value: Any) -> str:
    """``--key=value`` as jsonargparse reads it (values as YAML: JSON for everything but plain strings)."""
    return f"--{key}={value if isinstance(value, str) else json.dumps(value)}"


def setting_key(params: dict) -> str:
    """A short stable name of a setting (its parameter values), the name of its folder of fits."""
    return hashlib.sha256(json.dumps(params, sort_keys=True, default=str).encode()).hexdigest()[:10]


@dataclass(frozen=True)
class Axis:
    """One searched axis: ``kind`` choices / int / float; a named axis (no ``.`` in ``name``) has mapping choices."""

    name: str
    kind: str
    choices: tuple = ()
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None

    @property
    def bundle(self) -> bool:
        return self.kind == "choices" and all(isinstance(c, dict) for c in self.choices)

    def label(self, choice: Any) -> Any:
        """The value Optuna stores for ``choice`` (a scalar: lists and mappings become their JSON text)."""
        if self.bundle:
            return ", ".join(f"{k}={json.dumps(v)}" for k, v in choice.items())
        return choice if choice is None or isinstance(choice, (bool, int, float, str)) else json.dumps(choice)

    def overrides(self, value: Any) -> dict:
        """The config keys one sampled ``value`` of this axis sets."""
        if self.kind == "choices":
            by_label = {self.label(c): c for c in self.choices}
            choice = by_label[value]
            return dict(choice) if self.bundle else {self.name: choice}
        return {self.name: value}

    def suggest(self, trial) -> Any:
        """Draw this axis's value through Optuna's define-by-run API."""
        if self.kind == "choices":
            return trial.suggest_categorical(self.name, [self.label(c) for c in self.choices])
        if self.kind == "int":
            return trial.suggest_int(self.name, int(self.low), int(self.high), step=int(self.step or 1), log=self.log)
        return trial.suggest_float(self.name, self.low, self.high, step=self.step, log=self.log)

    def probes(self) -> list[dict]:
        """Settings that exercise every key and the range's ends, to check them before any trial."""
        if self.kind == "choices":
            return [self.overrides(self.label(c)) for c in self.choices]
        cast = int if self.kind == "int" else float
        return [{self.name: cast(self.low)}, {self.name: cast(self.high)}]


@dataclass(frozen=True)
class StudySpec:
    """A study file, checked. ``path`` is the file; ``name`` its stem unless it says ``name:``."""

    path: Path
    name: str
    config: tuple[str, ...]
    search_only: dict
    axes: tuple[Axis, ...]
    repeats: tuple[tuple[str, tuple], ...]  # (config key, values), outermost first
    epoch: str = "final"
    metric: str | None = None
    sampler: str = "grid"
    n_trials: int | None = None
    pruner: str = "none"
    sampler_seed: int = 0
    final: dict = field(default_factory=dict)
    first: tuple[dict, ...] = ()

    def repeat_points(self) -> list[dict]:
        """Every repeat of a setting (seed x fold x ...), in order: a fixed order, so pruning steps line up."""
        keys = [k for k, _ in self.repeats]
        return [dict(zip(keys, values, strict=True)) for values in itertools.product(*(v for _, v in self.repeats))]

    def grid_size(self) -> int:
        return math.prod(len(a.choices) for a in self.axes)

    def identity(self) -> dict:
        """What makes two runs of a study the same study (a folder holds one): not n_trials, workers or final."""
        return {
            "config": list(self.config),
            "search_only": self.search_only,
            "space": [a.__dict__ for a in self.axes],
            "repeats": [[k, list(v)] for k, v in self.repeats],
            "objective": [self.metric, self.epoch],
            "sampler": self.sampler,
            "pruner": self.pruner,
        }


def _fail(path: Path, what: str) -> ConfigError:
    return ConfigError(f"{path}: {what}")


def _ints(path: Path, key: str, values: Any) -> tuple[int, ...]:
    if not isinstance(values, list) or not values:
        raise _fail(path, f"{key}: {values!r} must be a non-empty list of integers, e.g. {key}: [0, 1, 2]")
    bad = [v for v in values if not isinstance(v, int) or isinstance(v, bool)]
    if bad:
        raise _fail(path, f"{key}: {bad[0]!r} is not an integer; write {key}: [0, 1, 2]")
    return tuple(values)


def _axis(path: Path, name: str, spec: Any) -> Axis:
    where = f"space.{name}"
    if not isinstance(spec, dict) or len(set(spec) & {"choices", "int", "float", "log"}) != 1:
        raise _fail(path, f"{where}: {spec!r}; give one of {{choices: [...]}}, {{int: [lo, hi]}}, {{float: [lo, hi]}}, "
                    "{log: [lo, hi]}")  # fmt: skip
    extra = set(spec) - {"choices", "int", "float", "log", "step"}
    if extra:
        raise _fail(path, f"{where}: unknown entries {sorted(extra)}; allowed: choices, int, float, log, step")
    if "choices" in spec:
        choices = spec["choices"]
        if not isinstance(choices, list) or not choices:
            raise _fail(path, f"{where}.choices: {choices!r} must be a non-empty list")
        mappings = [isinstance(c, dict) for c in choices]
        if "." not in name and not all(mappings):
            raise _fail(path, f"{where}: '{name}' is not a config key (keys look like model.backbone); a named axis "
                        "needs choices that are mappings of keys, e.g. choices: [{model.freeze_until: 1}]")  # fmt: skip
        axis = Axis(name, "choices", tuple(choices))
        if len({json.dumps(axis.label(c)) for c in choices}) != len(choices):
            raise _fail(path, f"{where}.choices: {choices!r} repeats a choice")
        return axis
    kind = "int" if "int" in spec else "float"
    bounds = spec.get("int", spec.get("float", spec.get("log")))
    if (
        not isinstance(bounds, list) or len(bounds) != 2 or
        not all(isinstance(b, (int, float)) and not isinstance(b, bool) for b in bounds) or bounds[0] >= bounds[1]
    ):  # fmt: skip
        raise _fail(path, f"{where}: {bounds!r} must be [low, high] numbers with low < high")
    if "log" in spec and bounds[0] <= 0:
        raise _fail(path, f"{where}: log range {bounds!r} must be above 0")
    if kind == "int" and not all(isinstance(b, int) for b in bounds):
        raise _fail(path, f"{where}: int range {bounds!r} needs integers")
    if "." not in name:
        raise _fail(path, f"{where}: '{name}' is not a config key (keys look like model.optimizer.init_args.lr)")
    return Axis(name, kind, low=bounds[0], high=bounds[1], log="log" in spec, step=spec.get("step"))


def load_spec(path: Path, **overrides: Any) -> StudySpec:
    """Read and check a study file; ``overrides`` (sampler, n_trials, seeds, folds, pruner) replace its entries."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such study file; the shipped ones are under configs/studies/") from None
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        raise ConfigError(f"{path}: not a YAML study file ({str(err).splitlines()[0]})") from None
    if not isinstance(raw, dict):
        raise _fail(path, "a study file is a mapping with config:, space:, seeds: ... (see configs/studies/)")
    raw.update({k: v for k, v in overrides.items() if v is not None})
    unknown = set(raw) - TOP_KEYS
    if unknown:
        raise _fail(path, f"unknown entries {sorted(unknown)}; a study has {', '.join(sorted(TOP_KEYS))}")
    config = raw.get("config") or []
    if isinstance(config, str):
        config = [config]
    for c in config:
        if not Path(c).is_file():
            raise _fail(path, f"config: {c} is not a file (paths are relative to where you run audiocls)")
    space = raw.get("space") or {}
    if not isinstance(space, dict) or not space:
        raise _fail(path, "space: is empty; give at least one key, e.g. space: {model.backbone: {choices: [a, b]}}")
    axes = tuple(_axis(path, str(k), v) for k, v in space.items())
    sampler = raw.get("sampler", "grid")
    if sampler not in SAMPLERS:
        raise _fail(path, f"sampler: {sampler!r}; choose one of {', '.join(SAMPLERS)}")
    ranged = [a.name for a in axes if a.kind != "choices"]
    if sampler == "grid" and ranged:
        raise _fail(path, f"space.{ranged[0]} is a range, and a grid takes choices only; set sampler: tpe (or random)")
    n_trials = raw.get("n_trials")
    if sampler != "grid" and (not isinstance(n_trials, int) or n_trials < 1):
        raise _fail(path, f"n_trials: {n_trials!r}; sampler {sampler} needs a number of settings to try, e.g. 20")
    pruner = raw.get("pruner", "none")
    if pruner not in PRUNERS:
        raise _fail(path, f"pruner: {pruner!r}; choose one of {', '.join(PRUNERS)}")
    if pruner != "none" and sampler == "grid":
        raise _fail(path, f"pruner: {pruner} with sampler: grid; a grid runs every setting whole (pruning is for "
                    "tpe and random searches): set pruner: none")  # fmt: skip
    objective = raw.get("objective") or {}
    if not isinstance(objective, dict) or set(objective) - {"epoch", "metric"}:
        raise _fail(path, f"objective: {objective!r}; write objective: {{epoch: final}} (or best; metric: val/...)")
    epoch, metric = objective.get("epoch", "final"), objective.get("metric")
    if epoch not in EPOCHS:
        raise _fail(path, f"objective.epoch: {epoch!r}; choose final or best")
    if metric is not None and not str(metric).startswith("val/"):
        raise _fail(path, f"objective.metric: {metric!r} is not a validation key; the objective never sees a test "
                    "fold: use a val/ key, e.g. val/acc")  # fmt: skip
    repeats = []
    if "seeds" in raw:
        repeats.append(("seed_everything", _ints(path, "seeds", raw["seeds"])))
    if "folds" in raw:
        repeats.append(("data.fold", _ints(path, "folds", raw["folds"])))
    for key, values in (raw.get("repeat") or {}).items():
        if not isinstance(values, list) or not values:
            raise _fail(path, f"repeat.{key}: {values!r} must be a non-empty list")
        repeats.append((str(key), tuple(values)))
    clash = {k for k, _ in repeats} & ({a.name for a in axes} | set(raw.get("search_only") or {}))
    if clash:
        raise _fail(path, f"{sorted(clash)} is both searched (or fixed) and repeated; keep it in one place")
    final = raw.get("final") or {}
    if not isinstance(final, dict) or set(final) - {"seeds", "folds", "variants"}:
        raise _fail(path, f"final: {final!r}; write final: {{seeds: [0, 1, 2], variants: {{name: {{key: value}}}}}}")
    if "seeds" in final:
        _ints(path, "final.seeds", final["seeds"])
    if "folds" in final and final["folds"] is not None:
        _ints(path, "final.folds", final["folds"])
    first = raw.get("first") or []
    names = {a.name: a for a in axes}
    for setting in first if isinstance(first, list) else [first]:
        if not isinstance(setting, dict) or set(setting) != set(names):
            raise _fail(path, f"first: {setting!r} must give every searched axis ({', '.join(names)}) a value")
        for k, v in setting.items():
            a = names[k]
            ok = a.label(v) in [a.label(c) for c in a.choices] if a.kind == "choices" else a.low <= v <= a.high
            if not ok:
                raise _fail(path, f"first: {k}={v!r} is outside space.{k}")
    seed = raw.get("sampler_seed", 0)
    return StudySpec(
        path=path, name=str(raw.get("name") or path.stem), config=tuple(map(str, config)),
        search_only=dict(raw.get("search_only") or {}), axes=axes, repeats=tuple(repeats), epoch=epoch,
        metric=metric, sampler=sampler, n_trials=n_trials, pruner=pruner, sampler_seed=seed, final=final,
        first=tuple(first if isinstance(first, list) else [first]),
    )  # fmt: skip
