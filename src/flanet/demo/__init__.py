"""``flanet demo``: the whole system end to end on synthetic breast-ultrasound videos, with a report.

>>> from flanet.demo import DemoSettings, run_demo
>>> report = run_demo("flanet-demo", DemoSettings(minutes=10))
"""

from flanet.demo.pipeline import DemoSettings, prepare_demo_dir, run_demo

__all__ = ["DemoSettings", "prepare_demo_dir", "run_demo"]
