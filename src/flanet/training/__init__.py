"""Training on Lightning: recipes, the loss of eq. (2), run folders, resume, DDP.

>>> from flanet.training import train
>>> run_dir = train("cpu-small", ["data.root=/data/buv", "trainer.max_epochs=2"])
"""

from flanet._lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(
    __name__,
    {
        "flanet.training.config": ("ConfigError", "load_config", "shipped_configs"),
        "flanet.training.schema": ("TrainConfig",),
        "flanet.training.run": ("TrainingError", "train"),
    },
)
