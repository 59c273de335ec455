"""``zeroforge sweep``: hyperparameter search over a recipe's fields with Optuna (Akiba et al. 2019).

    zeroforge sweep --config recipes/gpt-char-shakespeare.yaml --space space.yaml --trials 20

The space names recipe fields, one per line::

    train.lr: loguniform 1e-4 3e-3     # also: uniform LOW HIGH, int LOW HIGH, logint LOW HIGH
    model.n_layer: [2, 4, 6]           # a list: one of these values

Each trial is a normal run of the recipe with its values as overrides, in ``OUT/trial-NNNN``. The
objective is the recipe's ``train.monitor`` (``val_loss`` unless the recipe says otherwise) at the run's
last evaluation, minimised for a loss and maximised otherwise (``train.monitor_mode``). Every evaluation
is reported to Optuna through ``train.runtime.on_evaluation``; the median pruner (a trial worse than
the median of the finished ones at the same step) stops it at that evaluation, its run directory then
complete with what it did.

Trials live in an RDB storage (default ``sqlite:///OUT/study.db``): ``--jobs N`` runs N worker
processes on it, workers on other machines join by pointing ``--storage`` at the same database
(PostgreSQL/MySQL URL), and a sweep that was killed resumes where it stopped when the same command runs
again. A trial that was running when its worker died stops sending heartbeats; once its grace period
(twice ``heartbeat``) passes it is marked failed and run again with the same values, so no trial is
lost or counted twice. ``--trials`` counts finished (complete or pruned) trials.

Output in OUT: ``trials.csv`` and ``trials.md`` (every trial: state, value, values, run directory),
``best.yaml`` (the recipe with the best trial's values) and the plots ``history.png``,
``importances.png`` and ``parallel.png`` (optuna.visualization.matplotlib).
"""

from __future__ import annotations

import csv
import io
import itertools
import math
import multiprocessing
import os
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from zeroforge.config import load_recipe
from zeroforge.errors import ConfigError, ZeroforgeError
from zeroforge.io import atomic_write_bytes, atomic_write_text

Sampler = Literal["tpe", "grid", "random"]
RANGES = ("uniform", "loguniform", "int", "logint")


@dataclass(frozen=True)
class Param:
    """One searched recipe field: a list of ``choices``, or a ``kind`` of range from ``low`` to ``high``."""

    key: str
    kind: str
    choices: tuple[Any, ...] = ()
    low: float = 0.0
    high: float = 0.0

    def describe(self) -> str:
        return f"{list(self.choices)}" if self.kind == "choice" else f"{self.kind} {self.low:g} {self.high:g}"


def _number(text: str, where: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise ConfigError(f"{where}: {text!r} is not a number") from None


def parse_param(key: Any, spec: Any, where: str) -> Param:
    """One line of a space file -> ``Param``; ConfigError naming ``where`` and the field."""
    at = f"{where}: {key}"
    if not isinstance(key, str) or key.count(".") < 1:
        raise ConfigError(f"{at}: expected a recipe field as section.key (e.g. train.lr)")
    if isinstance(spec, list):
        if not spec:
            raise ConfigError(f"{at}: empty list of choices (give at least one value)")
        if len({repr(v) for v in spec}) != len(spec):
            raise ConfigError(f"{at}: a choice is listed twice in {spec}")
        return Param(key, "choice", tuple(spec))
    words = str(spec).split() if isinstance(spec, str) else []
    if len(words) != 3 or words[0] not in RANGES:
        raise ConfigError(
            f"{at}: expected a list of values or '<{'|'.join(RANGES)}> LOW HIGH' (e.g. loguniform 1e-4 3e-3), "
            f"got {spec!r}"
        )
    kind, low, high = words[0], _number(words[1], at), _number(words[2], at)
    if low > high:
        raise ConfigError(f"{at}: low {low:g} > high {high:g}")
    if kind.startswith("log") and low <= 0:
        raise ConfigError(f"{at}: {kind} needs low > 0, got {low:g}")
    if kind in ("int", "logint") and (low != int(low) or high != int(high)):
        raise ConfigError(f"{at}: {kind} bounds must be whole numbers, got {low:g} {high:g}")
    return Param(key, kind, low=low, high=high)


def override(key: str, value: Any) -> str:
    """``key=value`` as ``load_recipe`` parses it back (a float keeps its dot: YAML reads 1e-05 as text)."""
    if isinstance(value, float):
        text = repr(value)
        if "e" in text and "." not in text.split("e")[0]:
            mantissa, exponent = text.split("e")
            text = f"{mantissa}.0e{exponent}"
        return f"{key}={text}"
    return f"{key}={yaml.safe_dump(value, default_flow_style=True).strip().removesuffix('...').strip()}"


def read_space(
    path: str | os.PathLike[str], config: str | os.PathLike[str], overrides: list[str] | None = None
) -> list[Param]:
    """The space file's fields, each checked against the recipe: the field exists and takes every
    listed value (or both bounds)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: search space file not found")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        raise ConfigError(f"{path}: not valid YAML ({str(err).splitlines()[0]})") from None
    if not isinstance(data, dict) or not data:
        raise ConfigError(
            f"{path}: expected a mapping of recipe fields to ranges, e.g. 'train.lr: loguniform 1e-4 3e-3'"
        )
    params = [parse_param(key, spec, str(path)) for key, spec in data.items()]
    for p in params:
        values = p.choices if p.kind == "choice" else (_cast(p, p.low), _cast(p, p.high))
        for value in values:
            try:
                recipe = load_recipe(config, [*(overrides or []), override(p.key, value)])
                if recipe.model.name is not None and p.key.startswith("model."):
                    recipe.model_config()  # the model's own checks (n_embd divisible by n_head...)
            except ZeroforgeError as err:
                raise ConfigError(f"{path}: {p.key}: {value!r} is refused by the recipe ({err})") from None
    return params


def _cast(p: Param, value: float) -> float | int:
    return int(value) if p.kind in ("int", "logint") else value


def suggest(trial: Any, p: Param) -> Any:
    """The trial's value for ``p`` (Optuna's suggest_* API)."""
    if p.kind == "choice":
        return trial.suggest_categorical(p.key, list(p.choices))
    if p.kind in ("int", "logint"):
        return trial.suggest_int(p.key, int(p.low), int(p.high), log=p.kind == "logint")
    return trial.suggest_float(p.key, p.low, p.high, log=p.kind == "loguniform")


# ----------------------------------------------------------------------------- the search


@dataclass
class SweepSpec:
    """Everything a worker process needs (picklable)."""

    config: str
    overrides: list[str]
    params: list[Param]
    trials: int
    out_dir: str
    storage: str
    study_name: str
    sampler: Sampler
    seed: int
    heartbeat: float
    monitor: str
    prune: bool
    startup_trials: int


@dataclass
class SweepResult:
    out_dir: Path
    best_value: float | None
    best_params: dict[str, Any] = field(default_factory=dict)
    best_run: str | None = None
    finished: int = 0
    pruned: int = 0


def _optuna() -> Any:
    try:
        import optuna
    except ImportError as err:
        raise ConfigError(
            "sweep: needs Optuna (pip install 'zeroforge[sweep]' or pip install optuna)"
        ) from err
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    return optuna


def _storage(spec: SweepSpec) -> Any:
    optuna = _optuna()
    if not spec.storage.startswith(("sqlite:", "postgresql", "mysql")):
        raise ConfigError(
            f"--storage: expected an RDB URL (sqlite:///path.db, postgresql://...), got {spec.storage!r}"
        )
    # a stale trial (its worker died) is queued again with the same values; Optuna >= 4.9 names it so
    stale = getattr(optuna.storages, "RetryHeartbeatStaleTrialCallback", None)
    retry = (
        {"heartbeat_stale_trial_callback": stale(max_retry=2)}
        if stale is not None
        else {"failed_trial_callback": optuna.storages.RetryFailedTrialCallback(max_retry=2)}
    )
    return optuna.storages.RDBStorage(
        spec.storage,
        heartbeat_interval=max(1, round(spec.heartbeat)),
        grace_period=max(2, round(2 * spec.heartbeat)),
        **retry,
    )


def _sampler(spec: SweepSpec, worker: int) -> Any:
    optuna = _optuna()
    if spec.sampler == "grid":
        return optuna.samplers.GridSampler({p.key: list(p.choices) for p in spec.params}, seed=spec.seed)
    if spec.sampler == "random":
        return optuna.samplers.RandomSampler(seed=spec.seed + worker)
    return optuna.samplers.TPESampler(seed=spec.seed + worker, n_startup_trials=max(1, spec.startup_trials))


def _objective(spec: SweepSpec) -> Any:
    from zeroforge.train.runtime import on_evaluation
    from zeroforge.training import run_recipe

    optuna = _optuna()

    def objective(trial: Any) -> float:
        values = {p.key: suggest(trial, p) for p in spec.params}
        run_dir = Path(spec.out_dir) / f"trial-{trial.number:04d}"
        trial.set_user_attr("run_dir", str(run_dir))
        last: list[float] = []
        pruned: list[int] = []

        def listen(step: int, row: dict[str, Any]) -> bool:
            value = row.get(spec.monitor)
            if value is None or not math.isfinite(float(value)):
                return False
            last.append(float(value))
            trial.report(float(value), step)
            if spec.prune and trial.should_prune():
                pruned.append(step)
                return True
            return False

        overrides = [
            *spec.overrides,
            *(override(k, v) for k, v in values.items()),
            f"train.out_dir={run_dir}",
            "train.resume=false",
            "train.progress=false",
        ]
        print(f"trial {trial.number}: {', '.join(override(k, v) for k, v in values.items())}", flush=True)
        with on_evaluation(listen):
            run_recipe(spec.config, overrides)
        if pruned:
            print(
                f"trial {trial.number}: pruned at step {pruned[0]} ({spec.monitor} {last[-1]:.4f})",
                flush=True,
            )
            raise optuna.TrialPruned()
        if not last:
            raise ConfigError(
                f"trial {trial.number}: the run reported no {spec.monitor} (no validation data?)"
            )
        print(f"trial {trial.number}: {spec.monitor} {last[-1]:.4f}", flush=True)
        return last[-1]

    return objective


def _recover_stale(study: Any, spec: SweepSpec) -> None:
    """Trials left running by a killed worker: wait out their grace period (a live worker keeps its
    heartbeat fresh), then fail them, which queues each for a retry with the same values."""
    optuna = _optuna()
    running = optuna.trial.TrialState.RUNNING
    deadline = time.monotonic() + 2 * spec.heartbeat + spec.heartbeat + 1
    while any(t.state == running for t in study.get_trials(deepcopy=False)):
        optuna.storages.fail_stale_trials(study)
        if time.monotonic() > deadline or not any(
            t.state == running for t in study.get_trials(deepcopy=False)
        ):
            break
        time.sleep(max(0.5, spec.heartbeat / 2))


def run_worker(spec: SweepSpec, worker: int = 0) -> None:
    """One worker: trials from the shared study until ``spec.trials`` have finished."""
    optuna = _optuna()
    study = optuna.load_study(
        study_name=spec.study_name,
        storage=_storage(spec),
        sampler=_sampler(spec, worker),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=spec.startup_trials, n_warmup_steps=0),
    )
    states = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    if len(study.get_trials(deepcopy=False, states=states)) >= spec.trials:
        return
    study.optimize(
        _objective(spec),
        callbacks=[optuna.study.MaxTrialsCallback(spec.trials, states=states)],
        catch=(ZeroforgeError,),  # a combination the model refuses fails that trial, not the sweep
        gc_after_trial=True,
    )


def sweep(
    config: str | os.PathLike[str],
    space: str | os.PathLike[str],
    trials: int = 20,
    jobs: int = 1,
    storage: str | None = None,
    sampler: Sampler = "tpe",
    out_dir: str | os.PathLike[str] | None = None,
    overrides: list[str] | None = None,
    seed: int = 0,
    heartbeat: float = 30.0,
    prune: bool = True,
    startup_trials: int = 5,
) -> SweepResult:
    """Search ``space`` over ``config`` for ``trials`` finished trials; see the module docstring.
    Running it again with the same arguments resumes the sweep."""
    optuna = _optuna()
    if trials < 1:
        raise ConfigError(f"--trials: must be >= 1, got {trials}")
    if jobs < 1:
        raise ConfigError(f"--jobs: must be >= 1, got {jobs}")
    if sampler not in ("tpe", "grid", "random"):
        raise ConfigError(f"--sampler: expected tpe, grid or random, got {sampler!r}")
    if heartbeat <= 0:
        raise ConfigError(f"--heartbeat: must be > 0 seconds, got {heartbeat}")
    overrides = list(overrides or [])
    recipe = load_recipe(config, overrides)
    params = read_space(space, config, overrides)
    if sampler == "grid" and any(p.kind != "choice" for p in params):
        bad = next(p.key for p in params if p.kind != "choice")
        raise ConfigError(f"{space}: {bad}: the grid sampler needs a list of values for every field")
    name = f"sweep-{recipe.train.name}"
    out = Path(out_dir) if out_dir is not None else Path("runs") / name
    out.mkdir(parents=True, exist_ok=True)
    args = recipe.train
    minimize = args.monitor_mode == "min" or (args.monitor_mode == "auto" and "loss" in args.monitor)
    spec = SweepSpec(
        config=str(config),
        overrides=overrides,
        params=params,
        trials=trials,
        out_dir=str(out),
        storage=storage or f"sqlite:///{(out / 'study.db').resolve()}",
        study_name=name,
        sampler=sampler,
        seed=seed,
        heartbeat=heartbeat,
        monitor=args.monitor,
        prune=prune,
        startup_trials=startup_trials,
    )
    described = {p.key: p.describe() for p in params}
    study = optuna.create_study(
        study_name=name,
        storage=_storage(spec),
        direction="minimize" if minimize else "maximize",
        load_if_exists=True,
    )
    before = study.user_attrs.get("space")
    if before is not None and before != described:
        raise ConfigError(
            f"{spec.storage}: study {name!r} was started with another space ({before}); "
            "give this one its own --out or --storage"
        )
    study.set_user_attr("space", described)
    if not study.trials and sampler == "grid":  # the grid in the order it is written, not shuffled
        for combo in itertools.product(*(p.choices for p in params)):
            study.enqueue_trial(dict(zip((p.key for p in params), combo)))
    _recover_stale(study, spec)
    if jobs == 1:
        run_worker(spec, 0)
    else:
        ctx = multiprocessing.get_context("spawn")
        workers = [ctx.Process(target=run_worker, args=(spec, i), daemon=False) for i in range(jobs)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        failed = [w.exitcode for w in workers if w.exitcode]
        if failed:
            raise ZeroforgeError(f"sweep: {len(failed)} of {jobs} worker processes failed (exit {failed[0]})")
    return report(study, spec, recipe_path=str(config))


# ----------------------------------------------------------------------------- output


def trials_rows(study: Any, params: list[Param]) -> list[dict[str, Any]]:
    """One row per trial: number, state, value, last step reported, the values, run directory."""
    rows = []
    for t in study.get_trials(deepcopy=False):
        steps = sorted(t.intermediate_values)
        rows.append(
            {
                "trial": t.number,
                "state": t.state.name.lower(),
                "value": t.value,
                "last_step": steps[-1] if steps else None,
                **{p.key: t.params.get(p.key) for p in params},
                "seconds": round(t.duration.total_seconds(), 1) if t.duration else None,
                "run_dir": t.user_attrs.get("run_dir"),
            }
        )
    return rows


def _markdown(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "(no trials)\n"
    keys = list(rows[0])

    def cell(v: Any) -> str:
        return f"{v:.4g}" if isinstance(v, float) else ("" if v is None else str(v))

    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(cell(r[k]) for k in keys) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def _plots(study: Any, out: Path) -> list[str]:
    """history.png, importances.png, parallel.png; a plot Optuna cannot draw yet is skipped (named)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as ovm

    skipped = []
    for name, draw in (
        ("history", ovm.plot_optimization_history),
        ("importances", ovm.plot_param_importances),
        ("parallel", ovm.plot_parallel_coordinate),
    ):
        try:
            ax = draw(study)
        except (ValueError, RuntimeError) as err:  # e.g. importances need two finished trials
            skipped.append(f"{name} ({err})")
            continue
        fig = (ax.flat[0] if hasattr(ax, "flat") else ax).figure
        fig.set_size_inches(7, 4.5)
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=90)
        plt.close(fig)
        atomic_write_bytes(out / f"{name}.png", buf.getvalue())
    return skipped


def report(study: Any, spec: SweepSpec, recipe_path: str) -> SweepResult:
    """Write trials.csv/.md, best.yaml and the plots; returns the best trial."""
    optuna = _optuna()
    out = Path(spec.out_dir)
    rows = trials_rows(study, spec.params)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]) if rows else ["trial"])
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(out / "trials.csv", buf.getvalue())
    atomic_write_text(out / "trials.md", _markdown(rows))
    states = [t.state for t in study.get_trials(deepcopy=False)]
    result = SweepResult(
        out_dir=out,
        best_value=None,
        finished=sum(s in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED) for s in states),
        pruned=sum(s == optuna.trial.TrialState.PRUNED for s in states),
    )
    complete = [t for t in study.get_trials(deepcopy=False) if t.state == optuna.trial.TrialState.COMPLETE]
    if complete:
        best = study.best_trial
        result.best_value, result.best_params = best.value, dict(best.params)
        result.best_run = best.user_attrs.get("run_dir")
        recipe = load_recipe(
            recipe_path,
            [
                *spec.overrides,
                *(override(k, v) for k, v in best.params.items()),
                f"train.name={spec.study_name}-best",
            ],
        )
        body = recipe.to_dict()
        body["train"]["out_dir"] = None
        header = (
            f"# {spec.study_name}: trial {best.number} of {len(rows)}, {spec.monitor} {best.value:.4f}\n"
            f"# values: {', '.join(override(k, v) for k, v in best.params.items())}\n"
        )
        atomic_write_text(out / "best.yaml", header + yaml.safe_dump(body, sort_keys=False))
    skipped = _plots(study, out)
    for line in skipped:
        print(f"sweep: plot skipped: {line}")
    return result
