"""``gnsel study``: the whole answer in one command: correlation, cost, hpo and architectures, and a report.

``run_study(preset, out)`` runs the parts of a study preset (``quick``: MNIST-1D on the CPU;
``paper``: CIFAR-10 and friends on a GPU; or a YAML file), reusing finished work, and writes
``report.html``, ``report.md`` and a CSV per table into ``out``. Each part is a plug-in
(:class:`~gnsel.study.part.StudyPart`, registered in :data:`PARTS`); a new part is one module.
"""

# The built-in parts register themselves on import; the order of these imports is the study order.
# isort: off
from . import correlation as _correlation  # noqa: F401
from . import cost_part as _cost  # noqa: F401
from . import hpo as _hpo  # noqa: F401
from . import architectures as _architectures  # noqa: F401
from . import claims as _claims  # noqa: F401

# isort: on
from .part import PARTS, StudyContext, StudyPart, StudySpec, study_part
from .run import QUESTION, StudyResult, parse_parts, run_study
from .spec import list_study_presets, load_study

__all__ = ["PARTS", "QUESTION", "StudyContext", "StudyPart", "StudyResult", "StudySpec", "list_study_presets",
           "load_study", "parse_parts", "run_study", "study_part"]
