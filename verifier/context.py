"""What the checks of `noseprint verify` share: the bundle, the verifier's own choices, and what each check
derived for the checks after it (`verifier.checks` runs them in order)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import noseprint.circuits.srs as srs_store
import noseprint.encoder.release as release
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from noseprint.circuits.budget import Budget
from noseprint.circuits.chunked import ChunkedCircuits
from noseprint.circuits.keys import Keys
from noseprint.core.bundle import Manifest
from noseprint.core.layout import CircuitLayout
from noseprint.verifier.report import Report


@dataclass
class Context:
    bundle: Path
    srs_file: Path | None
    report: Report
    generator: Path = release.GENERATOR
    """The generator the verifier renders with: the released one, or one the auditor names (--generator)."""
    thumbnail: Path = release.THUMBNAIL
    """The thumbnail generator an image proof must be about: the released one, or one named by --thumbnail."""
    manifest_: Manifest | None = None
    srs: srs_store.Srs | None = None
    circuits: ChunkedCircuits | None = None
    keys: Keys | None = None
    """The encode circuit's verification key."""
    chunk_keys: list[Keys] = field(default_factory=list)
    """One per chunk shape."""
    chunk_usable_rows: list[int] = field(default_factory=list)
    """Per chunk, the rows of a committed column its own circuit's key fills (`usable_commit_rows`)."""
    z: list[int] = field(default_factory=list)
    signer: Ed25519PublicKey | None = None
    """The Ed25519 public key the auditor demands (--key), or None: then a signature is checked when present."""
    budget: Budget = field(default_factory=Budget)
    """What building this bundle's circuits may cost (`circuits.budget`), decided before any is built."""
    derived_in_worker: bool = False

    @property
    def manifest(self) -> Manifest:
        """The validated manifest; every check after the first may rely on it."""
        if self.manifest_ is None:
            raise RuntimeError("the manifest check has not run")
        return self.manifest_

    @property
    def layout(self) -> CircuitLayout:
        return self.manifest.layout

    def path(self, relative: str) -> Path:
        """A file of the bundle (its name already checked against the manifest's list)."""
        return self.bundle / relative
