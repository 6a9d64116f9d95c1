"""Tracking (issue #23): export, bench, eval and verify runs in MLflow, and ``runs`` to compare them.

``store`` (URIs, the MLflow-client store), ``rest`` (a standard-library REST client for servers), ``record`` (a
run as a record: push, queue), ``collect`` (params/tags/metrics from report dicts), ``hook`` (the commands'
options and ``publish_*``), ``compare`` (rows, baseline, regression rules), ``query`` (``runs``, ``runs sync``).
Only ``lsnet_deploy.commands`` imports this package; importing it never imports MLflow.
"""
