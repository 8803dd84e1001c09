"""Prometheus metrics: what EventFlow measures (catalog), how it is kept cheap and exposed."""

from eventflow.metrics.catalog import Metrics

__all__ = ["Metrics"]
