"""The search algorithms that ``gnsel hpo-bench`` replays over a finished zoo, and one search's state.

Each algorithm is the real implementation, driven against the zoo's lookup instead of training:

* ``grid``      -- every configuration of the zoo once, in an order shuffled by the seed, full budget;
* ``random``    -- Optuna's ``RandomSampler(seed=seed)``, ask/tell, categorical parameters, full budget;
* ``tpe``       -- Optuna's ``TPESampler(seed=seed)`` (its defaults; in Optuna 5 it is also the default
  multi-objective sampler and handles ``[a, b]`` objectives itself), ask/tell, full budget;
* ``hyperband`` -- hpbandster's ``HyperBand``, and ``bohb`` -- hpbandster's ``BOHB``: a Pyro name server
  on 127.0.0.1 in this process, one ``Worker`` in a background thread whose ``compute(config, budget)``
  answers from the lookup at ``round(budget)`` epochs, ConfigSpace categorical hyper-parameters,
  budgets ``min_budget .. epochs`` with ``eta`` (defaults 1 and 3), ``run(n_iterations=N)`` with the
  fewest brackets whose planned epochs cover the search budget.

A search spends a budget of epochs. Evaluations run in the order the algorithm asks for them; the
first evaluation that does not fit in what is left ends the search (later, cheaper ones are not
counted either); what hpbandster asks after that is answered with an infinite loss and ignored.
A configuration the algorithm proposes that the zoo lacks (a hole in the product of the
hyper-parameter values, e.g. a failed run) is a failed evaluation that costs nothing.

hpbandster 0.7.4 with ConfigSpace >= 1 and NumPy 2 needs two fixes, made per optimizer instance
(nothing in hpbandster, Pyro4 or ConfigSpace is patched): ConfigSpace 1.x hands out configurations
whose values are NumPy scalars (``numpy.str_``), which Pyro4's serpent serializer refuses -- the
dispatcher's job thread dies and ``run`` waits forever -- so the config generator's ``get_config`` is
wrapped to return plain Python values; and the budgets hpbandster computes are ``numpy.float64``,
which serpent writes as ``np.float64(...)`` under NumPy 2 and the worker cannot read back, so
``optimizer.budgets`` is replaced by a list of plain floats. The name server listens on a random free
port (``port=0``; ``port=None`` would take Pyro's fixed 9090, which parallel processes would fight
over). BOHB draws from NumPy's global generator, which is seeded per search and restored afterwards.

For speed (a search is ~100 look-ups, so Pyro's fixed costs dominate), one name server and one worker
serve all the searches of a process; each search gets its own run id, under which the worker is also
registered, so the previous search's dispatcher can shut down (Pyro sleeps ~0.1-0.2 s doing so) in a
background thread while the next search runs; and while the host lives, Pyro4's ``SERVERTYPE`` is
``"multiplex"`` and ``ONEWAY_THREADED`` is False (restored on exit). None of this changes what the
algorithms do: with one worker hpbandster runs its jobs one at a time, in a fixed order.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import threading
import uuid
import warnings
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from .objectives import Objective, pareto_front, pick_from_front

if TYPE_CHECKING:
    from .replay import Lookup

__all__ = ["ALGORITHMS", "BANDITS", "Evaluation", "Search", "run_algorithm"]

ALGORITHMS: dict[str, str] = {
    "grid": "every configuration once, shuffled by the seed, full budget",
    "random": "Optuna RandomSampler, full budget",
    "tpe": "Optuna TPESampler, full budget",
    "hyperband": "hpbandster HyperBand (successive halving over epochs)",
    "bohb": "hpbandster BOHB (HyperBand with a KDE model)",
}
BANDITS = ("hyperband", "bohb")


class BudgetExhausted(Exception):
    """The next evaluation does not fit in the search's budget."""


@dataclass
class Evaluation:
    """One evaluation of a configuration at a number of epochs, with the search's running totals."""

    config: int | None  # index into the lookup's configurations; None: not in the zoo
    epoch: int
    values: tuple[float, ...] | None  # objective values; None when the evaluation failed
    seconds: float
    gn_seconds: float
    replicate: int | None
    total_epochs: int
    total_seconds: float


@dataclass
class Search:
    """One search's state: the lookup, the objective, the budget, what it evaluated and selected."""

    lookup: Lookup
    objective: Objective
    budget: int
    seed: int
    bandit: bool = False
    records: list[Evaluation] = field(default_factory=list)
    spent_epochs: int = 0
    spent_seconds: float = 0.0
    spent_gn_seconds: float = 0.0
    exhausted: bool = False

    def __post_init__(self) -> None:
        self.table, self.mean_table = self.lookup.objective_table(self.objective)
        self.rng = np.random.default_rng([int(self.seed), 0x5EED])  # replicate draws (seed_mode "sample")
        self._selected: int | None = None  # index into records
        self._best: float = math.inf
        self._front: list[int] = []
        self._full_only = False
        self.curve: list[int | None] = []  # the selection after each evaluation

    # -- evaluating -------------------------------------------------------------------

    def fits(self, epochs: int) -> bool:
        """Whether an evaluation of ``epochs`` epochs can still run."""
        return not self.exhausted and self.spent_epochs + epochs <= self.budget

    def evaluate(self, config: int | None, epoch: int) -> tuple[float, ...] | None:
        """The objective of ``config`` after ``epoch`` epochs (None: failed); raises BudgetExhausted."""
        lk = self.lookup
        epoch = int(min(max(epoch, 1), lk.epochs))
        if self.exhausted:
            raise BudgetExhausted
        if config is None:
            self._record(Evaluation(None, epoch, None, 0.0, 0.0, None, self.spent_epochs, self.spent_seconds))
            return None
        if self.spent_epochs + epoch > self.budget:
            self.exhausted = True
            raise BudgetExhausted
        rep = None
        if lk.seed_mode == "sample":
            rep = int(self.rng.integers(int(lk.n_replicates[config])))
            raw = self.table[config, rep, epoch]
        else:
            raw = self.mean_table[config, epoch]
        seconds, gn_seconds = lk.cost(config, epoch, self.objective.uses_gn, rep)
        self.spent_epochs += epoch
        self.spent_seconds += seconds
        self.spent_gn_seconds += gn_seconds
        values = tuple(float(v) for v in raw) if np.all(np.isfinite(raw)) else None
        self._record(Evaluation(config, epoch, values, seconds, gn_seconds, rep,
                                self.spent_epochs, self.spent_seconds))
        return values

    # -- selecting --------------------------------------------------------------------

    def _record(self, ev: Evaluation) -> None:
        self.records.append(ev)
        i = len(self.records) - 1
        if ev.values is not None:
            full = ev.epoch == self.lookup.epochs
            if self.bandit and full and not self._full_only:
                # bandits select among full-budget evaluations as soon as there is one
                self._full_only = True
                self._selected, self._best, self._front = None, math.inf, []
            if full or not self._full_only:
                self._update_selection(i)
        self.curve.append(self._selected)

    def _update_selection(self, i: int) -> None:
        values = self.records[i].values
        assert values is not None
        if not self.objective.multi:
            if values[0] < self._best:
                self._best, self._selected = values[0], i
            return
        # multi-objective: keep the Pareto front incrementally; the pick only changes with it
        pts = {j: self.records[j].values for j in self._front}
        if any(_dominates(p, values) for p in pts.values()):
            return
        self._front = [j for j in self._front if not _dominates(values, pts[j])] + [i]
        front_pts = [self.records[j].values for j in self._front]
        self._selected = self._front[pick_from_front(front_pts)]

    @property
    def selected(self) -> Evaluation | None:
        """The selected evaluation: least objective (knee of the front for multi-objectives)."""
        return None if self._selected is None else self.records[self._selected]

    def candidates(self) -> list[int]:
        """Indices of the records the selection is made from."""
        ok = [i for i, r in enumerate(self.records) if r.values is not None]
        if self.bandit:
            full = [i for i in ok if self.records[i].epoch == self.lookup.epochs]
            return full or ok
        return ok

    def front_size(self) -> int:
        """Size of the Pareto front of the candidate evaluations (multi-objectives)."""
        pts = [self.records[i].values for i in self.candidates()]
        return len(pareto_front(pts)) if pts else 0

    # -- bandit scalarisation ---------------------------------------------------------

    def knee_score(self, values: tuple[float, ...], epoch: int) -> float:
        """A multi-objective as one loss: the pick rule's score against the front at this budget.

        The sum over objectives of ``(v - lo) / (hi - lo)``, ``lo``/``hi`` the per-objective range of
        the Pareto front of every successful evaluation at ``epoch`` epochs so far (this one included).
        """
        pts = [r.values for r in self.records if r.values is not None and r.epoch == epoch]
        front = [pts[i] for i in pareto_front(pts)]
        score = 0.0
        for d, v in enumerate(values):
            lo, hi = min(p[d] for p in front), max(p[d] for p in front)
            score += (v - lo) / (hi - lo) if hi > lo else 0.0
        return score


def _dominates(a: tuple[float, ...], b: tuple[float, ...]) -> bool:
    """``a`` weakly better everywhere and strictly better somewhere (minimising)."""
    return all(x <= y for x, y in zip(a, b)) and any(x < y for x, y in zip(a, b))


# ----------------------------------------------------------------------------- drivers


def run_grid(search: Search) -> None:
    """Every configuration once, in an order shuffled by the seed, at the full budget."""
    order = np.random.default_rng(search.seed).permutation(len(search.lookup.configs))
    for c in order:
        try:
            search.evaluate(int(c), search.lookup.epochs)
        except BudgetExhausted:
            return


@contextlib.contextmanager
def _quiet_optuna():
    import optuna

    level = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield optuna
    finally:
        optuna.logging.set_verbosity(level)


def run_optuna(search: Search, sampler_name: str) -> None:
    """Optuna ask/tell with categorical parameters, every trial at the full budget."""
    with _quiet_optuna() as optuna:
        from optuna.distributions import CategoricalDistribution
        from optuna.trial import TrialState

        sampler_cls = optuna.samplers.RandomSampler if sampler_name == "random" else optuna.samplers.TPESampler
        k = len(search.objective.parts)
        study = optuna.create_study(sampler=sampler_cls(seed=search.seed), directions=["minimize"] * k)
        lk = search.lookup
        dists = {name: CategoricalDistribution(labels) for name, labels in lk.params.items()}
        max_trials = 10 * (search.budget // lk.epochs) + 100  # a guard against a zoo that is mostly holes
        for _ in range(max_trials):
            if not search.fits(lk.epochs):
                return
            trial = study.ask(dists)
            config = lk.index.get(tuple(trial.params[name] for name in lk.params))
            values = search.evaluate(config, lk.epochs)
            if values is None:
                study.tell(trial, state=TrialState.FAIL)
            else:
                study.tell(trial, list(values) if k > 1 else values[0])


# ----------------------------------------------------------------------------- hpbandster


def _plain(value: Any) -> Any:
    """A NumPy scalar as the Python value (Pyro4's serializer only takes built-in types)."""
    return value.item() if isinstance(value, np.generic) else value


class HpbandsterHost:
    """An in-process Pyro name server and one hpbandster worker thread, reused by many searches.

    Use as a context manager; ``run`` drives one HyperBand or BOHB search against a :class:`Search`.
    Searches run one after the other (the worker is single, BOHB uses NumPy's global generator).
    """

    def __init__(self) -> None:
        self.run_id = f"gnsel-replay-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.task: Callable[[dict[str, Any], float], dict[str, Any]] | None = None
        self.logger = logging.getLogger("gnsel.replay.hpbandster")
        self.ns = None
        self.worker = None

    def __enter__(self) -> HpbandsterHost:
        import Pyro4
        import hpbandster.core.nameserver as hpns
        from hpbandster.core.worker import Worker

        host = self

        class ReplayWorker(Worker):
            def compute(self, config_id: Any, config: dict[str, Any], budget: float, working_directory: str) -> dict[str, Any]:
                return host._compute(config, budget)

        self._quiet = _QuietLoggers(("hpbandster", "Pyro4", self.logger.name))
        self._quiet.__enter__()
        self._warnings = warnings.catch_warnings()
        self._warnings.__enter__()
        warnings.filterwarnings("ignore", category=DeprecationWarning, module="Pyro4")  # isSet() in its loops
        # Pyro settings while the host lives (restored on exit): a select-based server and one-way calls
        # handled in the server's thread -- no thread pool to start and stop with every dispatcher
        self._pyro_config = {k: getattr(Pyro4.config, k) for k in _PYRO_SETTINGS}
        for k, v in _PYRO_SETTINGS.items():
            setattr(Pyro4.config, k, v)
        self._closing: list[threading.Thread] = []
        self._searches = 0
        try:
            self.ns = hpns.NameServer(run_id=self.run_id, host="127.0.0.1", port=0)
            self.ns_host, self.ns_port = self.ns.start()
            self.worker = ReplayWorker(run_id=self.run_id, nameserver=self.ns_host, nameserver_port=self.ns_port,
                                       host="127.0.0.1", logger=self.logger)
            self.worker.run(background=True)
            for _ in range(500):  # wait until the worker is registered
                with Pyro4.locateNS(host=self.ns_host, port=self.ns_port) as ns:
                    found = ns.list(prefix=f"hpbandster.run_{self.run_id}.worker.")
                if found:
                    self.worker_uri = next(iter(found.values()))
                    break
                threading.Event().wait(0.01)
            else:
                raise RuntimeError("the hpbandster worker did not register with the name server")
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        import Pyro4

        try:
            for t in getattr(self, "_closing", []):
                t.join()
            if self.worker is not None and getattr(self.worker, "pyro_daemon", None) is not None:
                self.worker.shutdown()
            if self.ns is not None:
                self.ns.shutdown()
        finally:
            self.worker = self.ns = None
            for k, v in getattr(self, "_pyro_config", {}).items():
                setattr(Pyro4.config, k, v)
            self._warnings.__exit__(None, None, None)
            self._quiet.__exit__(None, None, None)

    def _alias(self, run_id: str, add: bool) -> None:
        """(Un)register the worker under a search's own run id, where that search's dispatcher looks."""
        import Pyro4

        name = f"hpbandster.run_{run_id}.worker.replay"
        with Pyro4.locateNS(host=self.ns_host, port=self.ns_port) as ns:
            if add:
                ns.register(name, self.worker_uri)
            else:
                ns.remove(name)

    def _compute(self, config: dict[str, Any], budget: float) -> dict[str, Any]:
        try:
            assert self.task is not None
            return self.task(config, budget)
        except Exception as err:  # noqa: BLE001 - kept and raised again after the run
            self.error = err
            return {"loss": float("inf"), "info": {}}

    def run(self, algorithm: str, search: Search, min_budget: float = 1.0, eta: float = 3.0) -> None:
        """One HyperBand/BOHB search over the lookup, until its budget is spent."""
        import ConfigSpace as CS
        from hpbandster.optimizers import BOHB, HyperBand

        lk = search.lookup
        names = list(lk.params)
        cs = CS.ConfigurationSpace(seed=int(search.seed))
        hps = [CS.CategoricalHyperparameter(name, list(lk.params[name])) for name in names]
        if hasattr(cs, "add"):  # ConfigSpace >= 1.0
            cs.add(*hps)
        else:
            cs.add_hyperparameters(hps)

        def task(config: dict[str, Any], budget: float) -> dict[str, Any]:
            epoch = int(min(max(round(float(budget)), 1), lk.epochs))
            c = lk.index.get(tuple(str(config[n]) for n in names))
            try:
                values = search.evaluate(c, epoch)
            except BudgetExhausted:
                return {"loss": float("inf"), "info": {"ignored": True}}
            if values is None:
                return {"loss": float("inf"), "info": {}}
            loss = search.knee_score(values, epoch) if len(values) > 1 else values[0]
            return {"loss": float(loss), "info": {}}

        cls = HyperBand if algorithm == "hyperband" else BOHB
        max_budget = float(lk.epochs)
        min_budget = float(min(max(min_budget, 1.0), max_budget))
        state = np.random.get_state()
        np.random.seed(int(search.seed) % 2**32)
        self.task, self.error = task, None
        # every search has its own run id (the worker is registered under it too), so that the last
        # search's dispatcher can shut down in the background while the next one runs
        self._searches += 1
        run_id = f"{self.run_id}-{self._searches}"
        self._closing = [t for t in self._closing if t.is_alive()]
        self._alias(run_id, True)
        opt = None
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                opt = cls(configspace=cs, run_id=run_id, nameserver=self.ns_host, nameserver_port=self.ns_port,
                          host="127.0.0.1", min_budget=min_budget, max_budget=max_budget, eta=eta,
                          logger=self.logger)
                try:
                    # compatibility: plain Python budgets and configuration values for Pyro4 (see module doc)
                    opt.budgets = [float(b) for b in opt.budgets]
                    sample = opt.config_generator.get_config

                    def get_config(budget: float) -> tuple[dict[str, Any], dict[str, Any]]:
                        config, info = sample(budget)
                        return {k: _plain(v) for k, v in dict(config).items()}, {k: _plain(v) for k, v in info.items()}

                    opt.config_generator.get_config = get_config
                    opt.run(n_iterations=self.iterations_for(opt, search.budget, lk.epochs), min_n_workers=1)
                finally:
                    self._closing.append(threading.Thread(target=self._close, args=(opt, run_id), daemon=True))
                    self._closing[-1].start()
        finally:
            np.random.set_state(state)
            self.task = None
            if opt is None:
                self._alias(run_id, False)
        if self.error is not None:
            raise self.error

    def _close(self, opt: Any, run_id: str) -> None:
        opt.shutdown(shutdown_workers=False)
        self._alias(run_id, False)

    @staticmethod
    def iterations_for(opt: Any, budget: int, epochs: int) -> int:
        """The fewest hpbandster iterations (brackets) whose planned epochs reach ``budget``."""
        total, n = 0, 0
        while total < budget and n < 10_000:
            it = opt.get_next_iteration(n, {})
            total += sum(int(k) * int(min(max(round(float(b)), 1), epochs)) for k, b in zip(it.num_configs, it.budgets))
            n += 1
        return max(n, 1)


_PYRO_SETTINGS = {"SERVERTYPE": "multiplex", "ONEWAY_THREADED": False}


class _QuietLoggers:
    """Raise some loggers to ERROR for a while (BOHB logs a warning for every degenerate KDE)."""

    def __init__(self, names: tuple[str, ...]) -> None:
        self.names = names

    def __enter__(self) -> None:
        self.levels = {n: logging.getLogger(n).level for n in self.names}
        for n in self.names:
            logging.getLogger(n).setLevel(logging.ERROR)

    def __exit__(self, *exc: object) -> None:
        for n, level in self.levels.items():
            logging.getLogger(n).setLevel(level)


# ----------------------------------------------------------------------------- dispatch


def run_algorithm(
    algorithm: str, search: Search, host: HpbandsterHost | None = None, min_budget: float = 1.0, eta: float = 3.0
) -> Search:
    """Drive ``algorithm`` over ``search`` (``host`` needed by the hpbandster ones); returns it."""
    if algorithm == "grid":
        run_grid(search)
    elif algorithm in ("random", "tpe"):
        run_optuna(search, algorithm)
    elif algorithm in BANDITS:
        if host is None:
            with HpbandsterHost() as h:
                h.run(algorithm, search, min_budget, eta)
        else:
            host.run(algorithm, search, min_budget, eta)
    else:
        raise ValueError(f"unknown search algorithm {algorithm!r}; choices: {', '.join(ALGORITHMS)}")
    return search
