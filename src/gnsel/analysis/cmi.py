"""Conditional mutual information (CMI) score of Jiang et al. (2020) and of the PGDL competition.

Definition (Jiang et al. 2020, "Fantastic Generalization Measures and Where to Find Them",
Sec. 6; used as the metric of the NeurIPS 2020 "Predicting Generalization in Deep
Learning" (PGDL) competition). For an ordered pair of models (a, b):

* ``V_mu = sign(mu_a - mu_b)``   (does the measure say a > b),
* ``V_g  = sign(g_a - g_b)``     (is a's target, e.g. the generalization gap, larger),
* ``U_S = (theta_a[S], theta_b[S])``, the values of the hyper-parameters in ``S`` of *both*
  models (an ordered pair of configurations restricted to ``S``).

``I(V_mu; V_g | U_S) = sum_u p(u) I(V_mu; V_g | U_S = u)`` and
``H(V_g | U_S) = sum_u p(u) H(V_g | U_S = u)``, both plug-in estimates from the pair
counts; the score is ``min_S I(V_mu; V_g | U_S) / H(V_g | U_S)`` over the conditioning
sets ``S`` with ``|S|`` in ``ks`` (``(0, 1, 2)`` by default: "|S| <= 2" as in the paper).
It is a fraction in [0, 1]: 1 when the measure orders every pair as the target does
within every conditioning cell, ~0 when it carries no information beyond the
hyper-parameters in some ``S`` of size <= 2.

Conventions of the default estimator (``pgdl_kit_quirks=False``):

* all ordered pairs ``a != b`` (each unordered pair both ways); a model is never paired
  with itself;
* pairs tied in the target (``V_g = 0``) are dropped: there is no order to predict;
* a tie in the measure is its own value ``V_mu = 0`` (so ``V_mu`` has three values and a
  constant measure scores 0);
* cells ``u`` with fewer than ``min_pairs`` ordered pairs are dropped and ``p(u)`` is
  renormalised over the rest (``min_pairs=1`` keeps every cell, i.e. the plain plug-in
  estimator; raise it to damp the upward bias of the plug-in MI in tiny cells);
* a set ``S`` with ``H(V_g | U_S) = 0`` (the target order is fully fixed by ``S``) has no
  score (NaN) and is left out of the minimum; the result is NaN if every set is;
* rows with a NaN measure or target are dropped (``n_nan`` counts them); ``+-inf`` are ordered
  values (above / below every finite value, equal infinities tie), so the score equals that with
  each infinity replaced by a finite value beyond the others; logs are base 2 (the ratio is unit-free).

``pgdl_kit_quirks=True`` reproduces the scoring program of the PGDL starting kit
(``scoring_program/mutual_information.py``, function ``conditional_mutual_information``,
Apache-2.0, Y. Jiang 2020; read in the public copies ``cadurosar/pgdl`` and
``samiul272/pgdl_proposal``), whose conventions differ:

1. pairs run over *all* ordered ``(a, b)`` including ``a == b`` (self-pairs);
2. ``V_g`` and ``V_mu`` are binary with a strict ``>``: ``'+'`` if ``x_a > x_b`` else ``'-'``,
   so ties (and every self-pair) land in the ``('-gap', '-measure')`` cell;
3. only ``|S| = 2`` is scored: the loop is over ordered pairs of distinct hyper-parameters
   (``h1 != h2``; each unordered set twice, same value); the ``|S| = 0`` table builder is
   dead code (it refers to undefined names) and ``|S| = 1`` is never built;
4. the conditioning axis enumerates every value combination ``(v_a, v_b)`` of each
   hyper-parameter, and MI and ``H(V_g)`` are *unweighted* means over those cells; the score
   is ``mean_u I_u / mean_u H_u`` (a ratio of means);
5. ``H`` uses ``-sum p log2(p + 1e-12)`` (so a deterministic cell has a tiny negative entropy);
6. the program first checks the data (``score.py``, ``check_data_validity``): a complete
   grid with exactly one model per configuration, otherwise it raises -- so here too;
   with a complete grid every cell is non-empty and the unweighted mean equals the
   ``p(u)``-weighted one.

Not reproduced: the kit builds cell keys by string concatenation ``str(v_a) + str(v_b)``,
so values such as ``1`` and ``11`` can collide (an empty NaN cell then leaks into its
``min``); with fewer than two hyper-parameters it returns ``inf`` (here: ``ValueError``).
The kit's target is ``train_acc - test_acc``; the competition's ``score.py`` averages the
per-task scores and multiplies by 100 (here the fraction is returned). In quirk mode
``ks`` and ``min_pairs`` are ignored.

Cost: O(N^2) pairs held in memory (N models); fine for a few thousand models.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import combinations

import numpy as np
import pandas as pd

from ._common import clean_frame, group_ids, hparam_codes, order_sign

__all__ = ["CMIResult", "conditional_mutual_information"]


@dataclass(frozen=True)
class CMIResult:
    """CMI score (min over conditioning sets), the minimising set, the score of every set, and the number
    ``n_nan`` of rows dropped for a NaN measure or target."""

    value: float
    argmin: tuple[str, ...] | None
    per_subset: dict[tuple[str, ...], float]
    n_models: int
    n_pairs: int
    quirks: bool = False
    n_nan: int = 0

    def to_frame(self) -> pd.DataFrame:
        """One row per conditioning set: its size and normalised conditional MI."""
        rows = [{"subset": ",".join(s) if s else "(none)", "k": len(s), "cmi": v}
                for s, v in self.per_subset.items()]
        return pd.DataFrame(rows, columns=["subset", "k", "cmi"])


def _cell_stats(table: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per cell of a (cells, g, m) count table: pair count, MI(V_g; V_mu) and H(V_g), base 2."""
    n = table.sum(axis=(1, 2))
    joint = table / n[:, None, None]
    pg = joint.sum(axis=2, keepdims=True)
    pm = joint.sum(axis=1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(joint > 0, joint * np.log2(joint / (pg * pm)), 0.0)
        hg = np.where(pg > 0, -pg * np.log2(pg), 0.0)
    return n, terms.sum(axis=(1, 2)), hg.sum(axis=(1, 2))


def _standard(mu: np.ndarray, gap: np.ndarray, codes: np.ndarray, hparams: list[str],
              ks: Sequence[int], min_pairs: int) -> tuple[dict[tuple[str, ...], float], int]:
    """Normalised CMI for every conditioning set (default conventions) and the pair count."""
    i, j = np.triu_indices(mu.size, k=1)
    sg = order_sign(gap[i], gap[j])  # not np.sign(a - b): inf - inf is NaN, here a tie
    keep = sg != 0
    i, j, sg = i[keep], j[keep], sg[keep]
    sm = order_sign(mu[i], mu[j])
    g_idx = (sg > 0).astype(np.int64)          # 0: '-', 1: '+'
    m_idx = (sm + 1).astype(np.int64)          # 0: '-', 1: tie, 2: '+'
    out: dict[tuple[str, ...], float] = {}
    for k in sorted(set(ks)):
        if k < 0 or k > len(hparams):
            continue
        for subset in combinations(range(len(hparams)), k):
            cell = group_ids(codes[:, list(subset)])
            n_cells = int(cell.max()) + 1 if cell.size else 1
            size = n_cells * n_cells * 6
            fwd = (cell[i] * n_cells + cell[j]) * 6 + g_idx * 3 + m_idx
            bwd = (cell[j] * n_cells + cell[i]) * 6 + (1 - g_idx) * 3 + (2 - m_idx)
            table = (np.bincount(fwd, minlength=size) + np.bincount(bwd, minlength=size))
            table = table.reshape(-1, 2, 3).astype(np.float64)
            table = table[table.sum(axis=(1, 2)) >= max(min_pairs, 1)]
            name = tuple(hparams[s] for s in subset)
            if table.shape[0] == 0:
                out[name] = float("nan")
                continue
            n, mi, hg = _cell_stats(table)
            cond_h = float((n * hg).sum() / n.sum())
            cond_i = float((n * mi).sum() / n.sum())
            out[name] = cond_i / cond_h if cond_h > 1e-12 else float("nan")
    return out, 2 * int(i.size)


def _kit_entropy(p: np.ndarray) -> np.ndarray:
    """The kit's entropy per row: -sum p log2(p + 1e-12) of the normalised counts."""
    q = p / p.sum(axis=-1, keepdims=True)
    return -(q * np.log2(q + 1e-12)).sum(axis=-1)


def _kit(mu: np.ndarray, gap: np.ndarray, codes: np.ndarray,
         hparams: list[str]) -> tuple[dict[tuple[str, ...], float], int]:
    """Normalised CMI per pair of hyper-parameters, reproducing the PGDL kit's scoring program."""
    if len(hparams) < 2:
        raise ValueError("the PGDL kit conditions on pairs of hyper-parameters: need >= 2 "
                         "(the kit itself returns inf)")
    cards = codes.max(axis=0) + 1
    n_configs = np.unique(codes, axis=0).shape[0]
    if n_configs != codes.shape[0] or codes.shape[0] != int(np.prod(cards)):
        raise ValueError("pgdl_kit_quirks needs a complete grid with exactly one model per "
                         "hyper-parameter configuration (the kit's check_data_validity)")
    g_idx = (gap[:, None] <= gap[None, :]).astype(np.int64).ravel()   # 0: '+gap'
    m_idx = (mu[:, None] <= mu[None, :]).astype(np.int64).ravel()     # 0: '+measure'
    out: dict[tuple[str, ...], float] = {}
    for h1, h2 in combinations(range(len(hparams)), 2):
        c1, c2 = codes[:, h1], codes[:, h2]
        n1, n2 = int(cards[h1]), int(cards[h2])
        a1 = (c1[:, None] * n1 + c1[None, :]).ravel()
        a2 = (c2[:, None] * n2 + c2[None, :]).ravel()
        n_cells = n1 * n1 * n2 * n2
        flat = ((a1 * n2 * n2 + a2) * 2 + g_idx) * 2 + m_idx
        table = np.bincount(flat, minlength=n_cells * 4).reshape(n_cells, 2, 2).astype(np.float64)
        total = table.sum(axis=(1, 2))
        joint = table / total[:, None, None]
        pg = joint.sum(axis=2, keepdims=True)
        pm = joint.sum(axis=1, keepdims=True)
        with np.errstate(divide="ignore", invalid="ignore"):
            mi = np.where(joint > 0, joint * np.log2(joint / (pg * pm)), 0.0).sum(axis=(1, 2))
        ce_gap = _kit_entropy(table.sum(axis=2))
        out[(hparams[h1], hparams[h2])] = float(mi.mean() / ce_gap.mean())
    return out, int(gap.size) ** 2


def conditional_mutual_information(
    df: pd.DataFrame,
    measure: str,
    target: str,
    hparams: Sequence[str],
    *,
    ks: Sequence[int] = (0, 1, 2),
    min_pairs: int = 1,
    pgdl_kit_quirks: bool = False,
) -> CMIResult:
    """Min over conditioning sets S (|S| in ks) of I(V_mu; V_g | U_S) / H(V_g | U_S), a fraction in [0, 1]."""
    hparams = list(hparams)
    data = clean_frame(df, [measure, target], hparams)
    mu = pd.to_numeric(data[measure]).to_numpy(np.float64)
    gap = pd.to_numeric(data[target]).to_numpy(np.float64)
    codes = hparam_codes(data, hparams)
    if pgdl_kit_quirks:
        per_subset, n_pairs = _kit(mu, gap, codes, hparams)
    else:
        per_subset, n_pairs = _standard(mu, gap, codes, hparams, ks, min_pairs)
    finite = {s: v for s, v in per_subset.items() if np.isfinite(v)}
    if finite:
        argmin = min(finite, key=finite.__getitem__)
        value = finite[argmin]
    else:
        argmin, value = None, float("nan")
    return CMIResult(float(value), argmin, per_subset, int(mu.size), n_pairs, pgdl_kit_quirks, len(df) - len(data))
