from .cli.hpo_bench import *  # noqa: F403  shim: removed after the merge (tests/test_replay.py imports register from here)
