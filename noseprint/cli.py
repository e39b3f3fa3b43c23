"""The `noseprint` console script: arguments in, the rooms' results out. Only wiring lives here: each topic's
commands live in their own module (`prove_cli`, `verify_cli`, `signing_cli`, `lineage_cli`, `srs_cli`,
`challenge_cli`, `registry_cli`, `watermark_cli`).

Errors are handled once, in `noseprint.console.CatchingGroup`; every command takes `--json`.
"""

from __future__ import annotations

import logging
import sys

import typer

from noseprint.challenge_cli import (
    challenge_command,
    prove_inference_command,
    query_command,
    verify_inference_command,
)
from noseprint.console import CatchingGroup
from noseprint.lineage_cli import architectures, compare, fingerprint, gallery
from noseprint.prove_cli import demo, make_demo_model, plan, prove
from noseprint.registry_cli import registry_app
from noseprint.signing_cli import keygen, sign
from noseprint.srs_cli import srs_app
from noseprint.verify_cli import check_opening_command, verify
from noseprint.watermark_cli import radioactive, watermark_app

logging.getLogger("ezkl").setLevel(logging.ERROR)
"""EZKL logs through Python's logging; its warnings (a high fixed-point scale, chosen on purpose for the encode
circuit) would reach the user's terminal through logging's last-resort handler. Its errors come as exceptions."""

app = typer.Typer(
    cls=CatchingGroup, add_completion=False, no_args_is_help=True, help="Zero-knowledge-proven LLM fingerprints."
)
app.add_typer(srs_app, name="srs")
app.add_typer(registry_app, name="registry")
app.add_typer(watermark_app, name="watermark")
app.command("radioactive")(radioactive)
app.command("challenge")(challenge_command)
app.command("query")(query_command)
app.command("prove-inference")(prove_inference_command)
app.command("verify-inference")(verify_inference_command)
app.command("prove")(prove)
app.command("verify")(verify)
app.command("keygen")(keygen)
app.command("sign")(sign)
app.command("check-opening")(check_opening_command)
app.command("demo")(demo)
app.command("make-demo-model")(make_demo_model)
app.command("fingerprint")(fingerprint)
app.command("compare")(compare)
app.command("gallery")(gallery)
app.command("architectures")(architectures)
app.command("plan")(plan)


def main() -> None:  # pragma: no cover
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
