"""``gnsel study``: the whole answer in one command: correlation, cost, hpo and architectures, and a report.

``run_study(preset, out)`` runs the parts of a study preset (``quick``: MNIST-1D on the CPU;
``paper``: CIFAR-10 and friends on a GPU; or a YAML file), reusing finished work, and writes
``report.html``, ``report.md`` and a CSV per table into ``out``.
"""

from .run import QUESTION, StudyResult, parse_parts, run_study
from .spec import PARTS, StudySpec, list_study_presets, load_study

__all__ = ["PARTS", "QUESTION", "StudyResult", "StudySpec", "list_study_presets", "load_study", "parse_parts",
           "run_study"]
