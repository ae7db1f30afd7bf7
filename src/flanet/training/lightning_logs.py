"""Lightning's console output, one line per event: no doubled lines, no advertisement, no stale warning.

Three things made ``flanet train`` print noise (issue 27, item 5):

* the ``lightning`` package adds its own stderr handler at import and lets records propagate, so
  under ``flanet``'s root handler every Lightning INFO line came out twice (``INFO: ...`` and
  ``INFO lightning.pytorch...: ...``);
* Lightning logs tips for its cloud products ("Tip: ... litlogger / litmodels") at every fit;
* Lightning's ``_pytree`` helper trips a torch deprecation warning about ``LeafSpec`` (Lightning's
  code, nothing a user can act on).

:func:`quiet_lightning` fixes the first two on the loggers and filters the third; it is idempotent
and runs when a trainer is built, after ``lightning`` was imported.
"""

from __future__ import annotations

import logging
import warnings

__all__ = ["ADVERTISEMENT_PREFIX", "quiet_lightning"]

#: Lightning's product tips start with this (``logger_connector.py``, ``callback_connector.py``).
ADVERTISEMENT_PREFIX = "💡 Tip:"


class _DropAdvertisements(logging.Filter):
    """Drop Lightning's product tips; keep every other record."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.getMessage()).startswith(ADVERTISEMENT_PREFIX)


_FILTER = _DropAdvertisements()


def quiet_lightning() -> None:
    """One console line per Lightning event, without product tips or its ``LeafSpec`` warning.

    Where the root logger has a handler (``flanet`` commands: ``logging.basicConfig``), the
    ``lightning`` logger's own handler is removed so each record is printed once, by the root's,
    in flanet's format; in a program that configured no logging, Lightning's handler stays.
    """
    if logging.getLogger().handlers:
        for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
            logger = logging.getLogger(name)
            for handler in list(logger.handlers):
                logger.removeHandler(handler)
            logger.propagate = True
    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero"):
        logger = logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)
    warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated")
