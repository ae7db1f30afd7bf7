"""Evaluation: ``flanet evaluate`` (checkpoints, models, prediction folders) and ``flanet compare``.

>>> from flanet.evaluation import evaluate_prediction_folder
>>> result, check = evaluate_prediction_folder(Path("preds"), Path("data"), "test", Path("eval"))
>>> result.metrics["dice"], result.metrics["ci"]["dice"]
"""

from flanet._lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(
    __name__,
    {
        "flanet.evaluation.evaluate": ("EvaluationSettings", "PredictionFolderError", "evaluate_checkpoint", "evaluate_model", "evaluate_prediction_folder"),
        "flanet.evaluation.prediction_folder": ("PredictionCheck", "check_predictions"),
        "flanet.evaluation.scoring": ("EvaluationResult", "EvaluationScorer", "ScoredFrame"),
    },
)
