from .cli.tune import *  # noqa: F403  shim: removed after the merge (tests/test_tune.py imports register from here)
