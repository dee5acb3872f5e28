"""The lab: the family trained side by side, measured, explained, and a recommendation.

    from rnnlab.lab import CompareConfig, compare, advise, Limits
    outcome = compare(CompareConfig(budget="quick"))          # runs/compare-recall-quick/report.html
    advice = advise(outcome.results, Limits(max_latency_ms=5))
    print(advice.text())

``compare(config)`` runs a grid of models × lengths × seeds (``grid.py``) on local processes or
Ray (``executors.py``), one training run plus measurements per cell (``cell.py``, ``measures.py``),
and writes ``results.json`` (``results.py``, schema in ``rnnlab/schemas``) and ``report.html``
(``report.py``) with the seeds' claims checked (``claims.py``) and the selection guide applied to
the measurements (``advise.py``).
"""

from rnnlab.lab.advise import Advice, Limits, advise, guide_rules
from rnnlab.lab.claims import Claim, check_claims
from rnnlab.lab.compare import CompareOutcome, compare, rebuild
from rnnlab.lab.grid import BUDGETS, DEFAULT_MODELS, Budget, CompareConfig, resolve
from rnnlab.lab.report import write_report
from rnnlab.lab.results import load as load_results
from rnnlab.lab.results import schema as results_schema
from rnnlab.lab.results import validate as validate_results

__all__ = [
    "BUDGETS",
    "DEFAULT_MODELS",
    "Advice",
    "Budget",
    "Claim",
    "CompareConfig",
    "CompareOutcome",
    "Limits",
    "advise",
    "check_claims",
    "compare",
    "guide_rules",
    "load_results",
    "rebuild",
    "resolve",
    "results_schema",
    "validate_results",
    "write_report",
]
