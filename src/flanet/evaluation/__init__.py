"""Evaluation: ``flanet evaluate`` (checkpoints, models, prediction folders) and ``flanet benchmark``.

>>> from flanet.evaluation import evaluate_prediction_folder
>>> result, check = evaluate_prediction_folder(Path("preds"), Path("data"), "test", Path("eval"))
>>> result.metrics["dice"], result.metrics["ci"]["dice"]
"""

from flanet.evaluation.evaluate import (
    EvaluationSettings,
    PredictionFolderError,
    evaluate_checkpoint,
    evaluate_model,
    evaluate_prediction_folder,
)
from flanet.evaluation.predictions import PredictionCheck, check_predictions
from flanet.evaluation.scoring import EvaluationResult, EvaluationScorer, ScoredFrame

__all__ = [
    "EvaluationResult",
    "EvaluationScorer",
    "EvaluationSettings",
    "PredictionCheck",
    "PredictionFolderError",
    "ScoredFrame",
    "check_predictions",
    "evaluate_checkpoint",
    "evaluate_model",
    "evaluate_prediction_folder",
]
