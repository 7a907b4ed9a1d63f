"""``python -m gnsel.cli``: the ``gnsel`` command."""

from . import main

main()
