"""Checkpoint files: ``torch.save`` state dicts written atomically as ``<dir>/epoch_<k>.pt``.

Read back with ``torch.load(..., weights_only=True)`` (no arbitrary pickles). The store records each
run's directory; these functions only deal with the files.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

_CKPT_RE = re.compile(r"epoch_(\d+)\.pt")


def save_state(directory: Path, epoch: int, state_dict: Mapping[str, Any]) -> Path:
    """Atomically ``torch.save`` a state dict to ``directory/epoch_<k>.pt`` (directory created)."""
    import torch  # heavy: torch (the store opens in light worker processes that never touch checkpoints)

    directory.mkdir(parents=True, exist_ok=True)
    target = directory / f"epoch_{epoch}.pt"
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".epoch_{epoch}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            torch.save(state_dict, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def load_state(path: Path, map_location: Any = "cpu") -> dict[str, Any]:
    """``torch.load(path, weights_only=True)``."""
    import torch  # heavy: torch (see save_state)

    return torch.load(path, map_location=map_location, weights_only=True)


def saved_epochs(directory: Path) -> list[int]:
    """Sorted epochs with an ``epoch_<k>.pt`` file in ``directory`` (none if it does not exist)."""
    if not directory.is_dir():
        return []
    found = (_CKPT_RE.fullmatch(p.name) for p in directory.iterdir())
    return sorted(int(m.group(1)) for m in found if m)


def remove_states(directory: Path) -> None:
    """Delete every ``epoch_<k>.pt`` file of ``directory`` (a restarted run's stale checkpoints)."""
    for path in directory.glob("epoch_*.pt"):
        if _CKPT_RE.fullmatch(path.name):
            path.unlink(missing_ok=True)
