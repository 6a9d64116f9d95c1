"""CLI commands, one module each; every module has ``register(app)``. Order = ``--help`` order."""

from lsnet_deploy.exporters.base import TARGETS

COMMANDS = ["info", "doctor", "export", "compare", "predict", "verify", "bench", "eval", "runs"]
#: the root ``--help`` line (the targets from their registry)
APP_HELP = f"Export LSNet ({', '.join(TARGETS)}), run it without torch, benchmark it, prove parity."
