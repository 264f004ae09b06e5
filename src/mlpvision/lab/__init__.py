"""The inductive-bias lab: the claims of the MLP papers as small, rerunnable experiments (plan), their training
and measurement (runner), the generated report, and the publishing of trained models."""

from .executors import EXECUTORS, LabRunsFailed, make_executor
from .headline import headline_vs_cnn
from .ledger import ledger
from .paper import ASSUMPTION as PAPER_GPU
from .paper import paper_ledger, paper_plan, paper_settings, run_paper
from .plan import plan
from .publish import REFERENCE_ROLE, TEACHER_ROLE, publish, published_models
from .registration import plan_hash, plan_markdown
from .report import write_paper_report, write_report
from .runner import Lab, latency_only, run_lab
from .spec import LAB_DATA, Experiment, LabRun, Settings, check_data, data_suffix

__all__ = [
    "EXECUTORS",
    "LAB_DATA",
    "PAPER_GPU",
    "REFERENCE_ROLE",
    "TEACHER_ROLE",
    "Experiment",
    "Lab",
    "LabRun",
    "LabRunsFailed",
    "Settings",
    "check_data",
    "data_suffix",
    "headline_vs_cnn",
    "latency_only",
    "ledger",
    "make_executor",
    "paper_ledger",
    "paper_plan",
    "paper_settings",
    "plan",
    "plan_hash",
    "plan_markdown",
    "publish",
    "published_models",
    "run_lab",
    "run_paper",
    "write_paper_report",
    "write_report",
]
