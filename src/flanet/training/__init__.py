"""Training on Lightning: recipes, the loss of eq. (2), run folders, resume, DDP.

>>> from flanet.training import train
>>> run_dir = train("cpu-small", ["data.root=/data/buv", "trainer.epochs=2"])
"""

from flanet.training.config import ConfigError, load_config, shipped_configs
from flanet.training.run import TrainingError, train

__all__ = ["ConfigError", "TrainingError", "load_config", "shipped_configs", "train"]
