"""Accuracy on labelled images (``lsnet-deploy eval``): data, models, metrics, reports.

``evaluate(models, data, options)`` runs every model on the same images and returns an
:class:`EvalReport`; :func:`~lsnet_deploy.evaluate.report.as_dict` turns it into the JSON document.
"""

from .run import EvalOptions, EvalReport, evaluate

__all__ = ["EvalOptions", "EvalReport", "evaluate"]
