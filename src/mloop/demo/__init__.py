"""The demo: generated card transactions through the whole loop."""

from mloop.demo.data import DRIFTED_FEATURES, FEATURES, TARGET, corrupt, transactions
from mloop.demo.runner import DemoSummary, run_demo

__all__ = [
    "DRIFTED_FEATURES",
    "FEATURES",
    "TARGET",
    "DemoSummary",
    "corrupt",
    "run_demo",
    "transactions",
]
