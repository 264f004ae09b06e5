"""Training: the run's configuration, the loop, resumable state, EMA, distillation, fine-tuning, evaluation."""

from ..fields import field_docs
from .config import RESUMABLE_CHANGES, TrainConfig
from .distill import TeacherEnsemble, distillation_loss, load_teacher
from .ema import recompute_bn_stats, warmup_ema_fn
from .evaluate import EvalResult, SegEvalResult, evaluate, evaluate_segmentation, save_confusion_png
from .finetune import expand_token_mixing, load_for_finetuning
from .loop import Data, Run, TrainingError, TrainingStopped, build_data, train, train_one_epoch, validation_split
from .task import Classification, Segmentation, check_fit, get_task

__all__ = [
    "RESUMABLE_CHANGES",
    "Classification",
    "Data",
    "EvalResult",
    "Run",
    "SegEvalResult",
    "Segmentation",
    "TeacherEnsemble",
    "TrainConfig",
    "TrainingError",
    "TrainingStopped",
    "build_data",
    "check_fit",
    "distillation_loss",
    "evaluate",
    "evaluate_segmentation",
    "expand_token_mixing",
    "field_docs",
    "get_task",
    "load_for_finetuning",
    "load_teacher",
    "recompute_bn_stats",
    "save_confusion_png",
    "train",
    "train_one_epoch",
    "validation_split",
    "warmup_ema_fn",
]
