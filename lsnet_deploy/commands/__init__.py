"""CLI commands, one module each; every module has ``register(app)``. Order = ``--help`` order."""

COMMANDS = ["info", "doctor", "export", "compare", "predict", "verify", "bench", "eval", "runs"]
