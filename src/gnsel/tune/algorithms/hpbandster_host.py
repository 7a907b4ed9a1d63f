"""The hpbandster host of the ``hyperband`` and ``bohb`` replays: a Pyro name server on 127.0.0.1 in
this process and one ``Worker`` in a background thread whose ``compute(config, budget)`` answers from
the zoo's lookup at ``round(budget)`` epochs, with ConfigSpace categorical hyper-parameters, budgets
``min_budget .. epochs`` with ``eta`` (defaults 1 and 3) and ``run(n_iterations=N)`` with the fewest
brackets whose planned epochs cover the search budget. What hpbandster asks after the budget is spent
is answered with an infinite loss and ignored.

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

import logging
import os
import threading
import uuid
import warnings
from typing import Any, Callable

import numpy as np

from ..replay_search import BudgetExhausted, Search

__all__ = ["HpbandsterHost", "replay_with"]


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
        import hpbandster.core.nameserver as hpns  # heavy: hpbandster
        import Pyro4  # heavy: Pyro4
        from hpbandster.core.worker import Worker  # heavy: hpbandster

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
        import Pyro4  # heavy: Pyro4

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
        import Pyro4  # heavy: Pyro4

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

    def run(self, optimizer: type, search: Search, min_budget: float = 1.0, eta: float = 3.0) -> None:
        """One search by ``optimizer`` (hpbandster's ``HyperBand`` or ``BOHB``) over the lookup, until its
        budget is spent."""
        import ConfigSpace as CS  # heavy: ConfigSpace

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
                opt = optimizer(configspace=cs, run_id=run_id, nameserver=self.ns_host, nameserver_port=self.ns_port,
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


def replay_with(optimizer: str, search: Search, context: Any) -> None:
    """Replay ``search`` with hpbandster's optimizer class ``optimizer`` (``"HyperBand"``, ``"BOHB"``) on the
    name server the replay context shares between searches."""
    import hpbandster.optimizers  # heavy: hpbandster (Pyro4)

    host = context.shared("hpbandster", HpbandsterHost)
    host.run(getattr(hpbandster.optimizers, optimizer), search, context.min_budget, context.eta)
