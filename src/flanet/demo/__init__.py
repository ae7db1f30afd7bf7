"""``flanet demo``: the whole system end to end on synthetic breast-ultrasound videos, with a report.

>>> from flanet.demo import DemoSettings, run_demo
>>> report = run_demo("flanet-demo", DemoSettings(steps=990, seed=0))
"""

from flanet._lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(
    __name__,
    {
        "flanet.demo.pipeline": ("DemoSettings", "run_demo"),
    },
)
