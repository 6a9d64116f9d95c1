"""Workflows above the exporters and the runtime: ``compare``, bench's sweep, the precision ladder."""
