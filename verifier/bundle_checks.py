"""The checks of `noseprint verify` on the bundle as files: the manifest, its listed files, the owner's
signature, the token list, the tool and the networks it was made with."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import noseprint.encoder.release as release
from noseprint.core.bundle import MANIFEST, BundleError, Manifest
from noseprint.core.fileio import links_inside, read_inside, sha256_bytes
from noseprint.core.tokens import RULE, TokenList
from noseprint.verifier.report import CheckFailed

if TYPE_CHECKING:
    from noseprint.verifier.context import Context


def check_manifest(ctx: Context) -> None:
    """Well-formed by the bundle format's own reader (schema, then the layout's rules)."""
    try:
        ctx.manifest_ = Manifest.read(ctx.bundle)
    except BundleError as exc:
        raise CheckFailed("manifest", str(exc)) from None
    check_claims(ctx.manifest_)


def owner_claims(manifest: Manifest) -> dict[str, Any]:
    """The manifest's statements that no check can prove; `--redact` bundles leave them out."""
    model = manifest.data["model"]
    claims = {
        key: model[key] for key in ("model_type", "family", "layer_count", "fingerprinted_layers") if key in model
    }
    claims["tool"] = manifest.data["tool"]
    claims["created"] = manifest.data["created"]
    claims["srs_origin"] = manifest.data["srs"]["origin"]
    return claims


def check_claims(manifest: Manifest) -> None:
    """Unprovable claims must at least agree with what is proven: the fingerprinted layers are the last
    ones of the stated depth, as many as the circuit has."""
    layers, count = manifest.data["model"].get("fingerprinted_layers"), manifest.data["model"].get("layer_count")
    if layers is not None and len(layers) != len(manifest.layout.layers):
        raise CheckFailed("manifest", "the claimed fingerprinted layers are not as many as the circuit's layers")
    if layers is not None and count is not None and layers != list(range(count - len(layers), count)):
        raise CheckFailed("manifest", "the claimed fingerprinted layers are not the last layers of the claimed depth")


def check_files(ctx: Context) -> None:
    """Every file listed, present, unmodified; no symbolic link anywhere (nothing outside the bundle is read)."""
    links = links_inside(ctx.bundle)
    if links:
        raise CheckFailed("files", f"the bundle holds a symbolic link ({links[0]}); a bundle is plain files only")
    files = ctx.manifest.files
    for name in ctx.manifest.referenced_files():
        if name not in files:
            raise CheckFailed("files", f"{name} is used by the manifest but not listed with its hash")
    for name, digest in files.items():
        try:
            data = read_inside(ctx.bundle, name)
        except (OSError, ValueError) as exc:
            raise CheckFailed("files", f"{name} cannot be read ({exc})") from None
        if sha256_bytes(data) != digest:
            raise CheckFailed("files", f"{name} was modified: its SHA-256 differs from the manifest's")


def check_signature(ctx: Context) -> None:
    """The owner's DSSE-signed in-toto statement, when present (or demanded): it must sign exactly this manifest."""
    from noseprint.signing.attestation import check_bundle_signature, is_signed
    from noseprint.signing.dsse import EnvelopeError

    owner = ctx.manifest.owner_keyid  # checked against the proof's own outputs in "public output"
    if not is_signed(ctx.bundle):
        if ctx.signer is not None:
            raise CheckFailed("signature", "the bundle is not signed, and a signature by the given key is demanded")
        ctx.report.facts["signed"] = False
        return
    try:
        keyid, _ = check_bundle_signature(
            ctx.bundle, ctx.manifest.data, (ctx.bundle / MANIFEST).read_bytes(), ctx.signer
        )
    except EnvelopeError as exc:
        raise CheckFailed("signature", str(exc)) from None
    if owner is None:
        raise CheckFailed(
            "signature", "the bundle is signed, but its proof binds no owner: anyone could have signed it"
        )
    if keyid != owner:
        raise CheckFailed(
            "signature", f"the proof binds owner key {owner[:16]}…, but the bundle is signed by key {keyid[:16]}…"
        )
    ctx.report.facts["signed"] = True
    ctx.report.facts["signer_keyid"] = keyid
    ctx.report.facts["signer_demanded"] = ctx.signer is not None


def check_tokens(ctx: Context) -> None:
    """The token list must be the one the circuit's shape implies (unique ids, as many as the layout's rows of
    E) and the token rule's selection from the bundle's own tokenizer evidence, in the rule's order
    (`core.tokens`): the same weights give one fingerprint. The evidence is the owner's word about their
    tokenizer; `check-opening` checks it against an open model's. A list made before the rule (no evidence)
    verifies if its strings are in the rule's order, and is reported as not comparable."""
    try:
        listed = TokenList.from_json(read_inside(ctx.bundle, ctx.manifest.tokens_file))
    except (OSError, ValueError) as exc:
        raise CheckFailed("tokens", f"tokens.json is unreadable ({exc})") from None
    ids = listed.ids
    if len(set(ids)) != len(ids):
        raise CheckFailed("tokens", "tokens.json repeats a token id")
    if not len(ids) == ctx.manifest.token_count == ctx.layout.tokens:
        raise CheckFailed("tokens", "tokens.json, the manifest and the circuit layout disagree on the number of tokens")
    if listed.by_rule:
        problem = listed.rule_error()
        if problem is not None:
            raise CheckFailed("tokens", f"the tokens are not the token rule's selection ({RULE}): {problem}")
    else:
        problem = listed.order_error()
        if problem is not None:
            raise CheckFailed("tokens", problem)
        ctx.report.warnings.append(OWNER_TOKENS_WARNING)
    ctx.report.facts["token_rule"] = listed.rule
    ctx.report.claims["token_ids"] = ids
    ctx.report.claims["token_strings"] = [t.string for t in listed]


OWNER_TOKENS_WARNING = (
    "the fingerprint's tokens are the owner's own list, not chosen by the token rule: its z is not comparable "
    "with other fingerprints (the registry and `compare` refuse it)"
)


def check_tool(ctx: Context) -> None:
    from importlib.metadata import version

    theirs, ours = ctx.manifest.data["tool"]["ezkl"], version("ezkl")
    if theirs != ours:
        raise CheckFailed("tool", f"the bundle was proven with EZKL {theirs}; this verifier runs EZKL {ours}")


def check_networks(ctx: Context) -> None:
    if ctx.manifest.encoder_digest != release.RELEASED_ENCODER_DIGEST:
        raise CheckFailed("networks", "the bundle was made with an encoder that is not the released one")
    if ctx.generator == release.GENERATOR:
        if ctx.manifest.generator_digest != release.RELEASED_GENERATOR_DIGEST:
            raise CheckFailed(
                "networks",
                "the bundle was made with a generator that is not the released one (name it with --generator)",
            )
        trusted = release.RELEASED_GENERATOR_DIGEST
    else:
        trusted = release.network_digest(ctx.generator)
        if ctx.manifest.generator_digest != trusted:
            raise CheckFailed(
                "networks", "the bundle was made with another generator than the one given by --generator"
            )
    ctx.report.facts["encoder_digest"] = release.RELEASED_ENCODER_DIGEST
    ctx.report.facts["generator_digest"] = trusted
