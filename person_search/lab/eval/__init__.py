"""Evaluation of text-based person search: IRRA's metrics, the encode-and-rank loop, figures."""

from person_search.lab.eval.metrics import retrieval_metrics

__all__ = ["retrieval_metrics"]
