"""Fixtures shared by the test modules; a module opts in with
``pytestmark = pytest.mark.usefixtures("isolated_data_root", "one_torch_thread")``."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(scope="module")
def isolated_data_root(tmp_path_factory):
    """``GNSEL_DATA_ROOT`` points at a fresh folder for the module: generated data never touches the user's cache."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GNSEL_DATA_ROOT", str(tmp_path_factory.mktemp("data")))
        yield


@pytest.fixture(scope="module")
def one_torch_thread():
    """torch on one CPU thread for the module (small models run faster, and timings are steadier), restored after."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)
