"""`noseprint keygen` and `sign`: the owner's Ed25519 key, and a bundle signed with it."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from noseprint.console import JsonOption, emit_json, out
from noseprint.core.errors import UsageError


def keygen(
    out_path: Annotated[Path, typer.Option("--out", help="Private key file to write (public key: OUT.pub).")],
    force: Annotated[bool, typer.Option(help="Replace an existing key (the old one is lost).")] = False,
    as_json: JsonOption = False,
) -> None:
    """Make an Ed25519 signing key pair: the private key owner-only (0600), the public key beside it."""
    from noseprint.signing.keys import generate

    private, public, keyid = generate(out_path, force=force)
    if as_json:
        return emit_json({"private_key": str(private), "public_key": str(public), "keyid": keyid})
    out.print(f"[green]private key:[/] {private} (keep it secret)")
    out.print(f"public key: {public}")
    out.print(f"key id: {keyid}")


def sign(
    bundle: Annotated[Path, typer.Argument(help="Bundle folder written by `noseprint prove`.")],
    key: Annotated[Path, typer.Option("--key", help="Ed25519 private key (from keygen).")],
    force: Annotated[bool, typer.Option(help="Replace an existing signature.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Sign an existing bundle (DSSE envelope around an in-toto statement); `prove --sign` does this itself."""
    from noseprint.core.bundle import BundleError, Manifest
    from noseprint.signing.attestation import is_signed, sign_bundle
    from noseprint.signing.keys import key_id, load_private

    private = load_private(key)
    try:
        owner = Manifest.read(bundle).owner_keyid
    except BundleError as exc:
        raise UsageError(f"{bundle} is not a bundle folder: {exc}") from None
    if owner is None:
        raise UsageError(
            f"the proof in {bundle} binds no owner, so a signature would prove nothing: prove with --owner"
        )
    if key_id(private.public_key()) != owner:
        raise UsageError(f"the proof in {bundle} binds key {owner[:16]}…; only that key can sign it")
    if is_signed(bundle) and not force:
        raise UsageError(f"{bundle} is already signed (use --force to replace the signature)")
    keyid = sign_bundle(bundle, private)
    if as_json:
        return emit_json({"bundle": str(bundle), "keyid": keyid})
    out.print(f"[green]signed[/] {bundle} with key {keyid}")
