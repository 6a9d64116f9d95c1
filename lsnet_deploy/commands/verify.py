"""``lsnet-deploy verify ARTIFACT``: the artifact's golden self-test on this machine (no torch, no checkpoint)."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from lsnet_deploy.commands.common import PROVIDER_HELP
from lsnet_deploy.runtime.engine import BACKENDS, suffix_backends
from lsnet_deploy.tracking.hook import EXPERIMENT, TRACK, TRACK_ARTIFACT, TRACK_TAG, Tracker


def verify(artifact: Path = typer.Argument(..., help=f"Artifact ({'/'.join(suffix_backends())}) exported by "
                                           "lsnet-deploy."),
           device: str = typer.Option("cpu", "--device", "-d", help="cpu, cuda, jetson (or an OpenVINO device)."),
           backend: str = typer.Option("auto", "--backend", "-b", help="auto (from the file), "
                                       f"{', '.join(BACKENDS)}."),
           threads: Optional[int] = typer.Option(None, "--threads", help="CPU threads (default: the backend's)."),
           provider: str = typer.Option("auto", "--provider", help=PROVIDER_HELP),
           track: Optional[str] = TRACK, experiment: Optional[str] = EXPERIMENT,
           track_artifact: bool = TRACK_ARTIFACT, track_tag: Optional[List[str]] = TRACK_TAG) -> None:
    """Run the golden frames stored in the artifact through this runtime; compare with the PyTorch logits
    stored beside them under the artifact's precision gate. Exit 0 on pass, 5 on failure."""
    from rich.console import Console

    from lsnet_deploy import runtime
    from lsnet_deploy.commands.common import parity_table
    from lsnet_deploy.core.errors import ParityError
    from lsnet_deploy.runtime.golden import self_test
    from lsnet_deploy.tracking.hook import publish_verify

    tracker = Tracker.from_options(track, experiment, track_artifact, track_tag)
    with runtime.load(artifact, backend, device, threads, provider) as engine:
        verdict = self_test(engine)
        ep = getattr(engine, "providers", ["CPU"])[0].replace("ExecutionProvider", "")  # a GPU provider is named
        where = f"{engine.backend}/{engine.device}{f' ({ep})' if ep != 'CPU' else ''}, {engine.precision}"
    Console().print(parity_table([(f"{verdict.frames} golden frames", verdict.parity)], verdict.gate,
                                 title=f"golden self-test: {artifact.name} ({where}) vs stored PyTorch fp32 logits"))
    publish_verify(tracker, artifact, engine, verdict)
    if not verdict.passed:
        raise ParityError(f"{artifact.name} ({where}) fails its golden self-test: {'; '.join(verdict.failures)}")
    typer.echo(f"PASS: {artifact.name} ({where}) matches the PyTorch fp32 logits stored at export")


def register(app: typer.Typer) -> None:
    app.command()(verify)
