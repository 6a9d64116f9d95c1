"""The ground floor: errors, metadata, parity, golden data, atomic outputs, registry discovery, environment
probes, interrupt handling. numpy and Pillow only; imports nothing else of lsnet-deploy (see docs/architecture.md)."""

__version__ = "0.1.0"
