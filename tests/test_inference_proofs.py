"""Challenge inference with real EZKL proofs (issue 20).

The committed fixture (`tests/make_fixture_inference.py`) holds a toy LLaMA's bundle with its whole-model
commitment and the owner's inference proofs for one challenge. The auditor here derives every key itself,
rebuilds the models from their seeds and asks them the challenge: the proofs pass against the committed model
served honestly, and fail against another model served in its place, against answers to another challenge,
with a link between proofs changed, and with a proof moved to another layer's place. An attacker's model that
appends a layer doing nothing (another model's weights, output factors zero) is served as itself and its
honest proofs agree with it, but the ablation check refuses them. Weights crafted onto the honest model's
fingerprint (issue 20's opening attack) make a valid bundle that reads as the same base model, and their honest
inference proofs fail against the honest model served. The honest model proven with a chunking finer than a layer
is proven part by part (attention, then each FFN block) and passes; parts swapped or relinked are refused."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from noseprint.core.bundle import Bundle
from noseprint.models.demo_model import write_demo_model
from noseprint.verifier.challenge_statistics import MAX_LOGPROB_DEVIATION, MIN_LAYER_EFFECT

from testkit.inference_models import MODEL_SEED, MODEL_SHAPE, OTHER_SEED, write_inert_layer_model, write_nearby_model
from tests.conftest import DATA, linked_copy, run_cli
from tests.make_fixture_inference import CHUNKED, CRAFTED, INERT, NAME, SRS, SRS_LOGROWS

pytestmark = pytest.mark.proof
FIXTURE = DATA / NAME
CHALLENGE = FIXTURE / "proofs" / "challenge.json"


@pytest.fixture(scope="module")
def auditor(tmp_path_factory):
    """The auditor's home after one passing check (its keys derived there), and the served models' answers."""
    root = tmp_path_factory.mktemp("inference-auditor")
    home = root / "home"
    run_cli("srs", "import", str(SRS), "--logrows", SRS_LOGROWS, home=home, check=True)
    answers = {}
    served = {name: write_demo_model(root / f"model-{name}", MODEL_SHAPE, seed=seed)
              for name, seed in (("honest", MODEL_SEED), ("other", OTHER_SEED))}  # fmt: skip
    served["nearby"] = write_nearby_model(root / "model-nearby")
    for name, model in served.items():
        answers[name] = root / f"answers-{name}.json"
        run_cli("query", str(model), "--challenge", str(CHALLENGE), "--out", str(answers[name]), home=home,
                check=True)  # fmt: skip
    _, inert_served = write_inert_layer_model(root / "inert-models")
    answers["inert"] = root / "answers-inert.json"
    run_cli("query", str(inert_served), "--challenge", str(FIXTURE / INERT / "proofs" / "challenge.json"), "--out",
            str(answers["inert"]), home=home, check=True)  # fmt: skip
    answers["victim"] = root / "answers-victim.json"  # the honest model, asked the crafted bundle's challenge
    run_cli("query", str(served["honest"]), "--challenge", str(FIXTURE / CRAFTED / "proofs" / "challenge.json"),
            "--out", str(answers["victim"]), home=home, check=True)  # fmt: skip
    answers["chunked"] = root / "answers-chunked.json"  # the honest model, asked the chunked bundle's challenge
    run_cli("query", str(served["honest"]), "--challenge", str(FIXTURE / CHUNKED / "proofs" / "challenge.json"),
            "--out", str(answers["chunked"]), home=home, check=True)  # fmt: skip
    first = verify(home, answers=answers["honest"])
    inert = verify(home, FIXTURE / INERT / "proofs", answers["inert"], bundle=FIXTURE / INERT / "bundle")
    crafted = verify(home, FIXTURE / CRAFTED / "proofs", answers["victim"], bundle=FIXTURE / CRAFTED / "bundle")
    chunked = verify(home, FIXTURE / CHUNKED / "proofs", answers["chunked"], bundle=FIXTURE / CHUNKED / "bundle")
    return {"home": home, "answers": answers, "first": first, "inert": inert, "crafted": crafted, "chunked": chunked}


def verify(home, proofs=FIXTURE / "proofs", answers=None, bundle=FIXTURE / "bundle"):
    result = run_cli("verify-inference", str(bundle), str(proofs), "--answers", str(answers), "--json", home=home)
    return result.returncode, json.loads(result.stdout)


def test_the_bundle_commits_to_the_whole_model():
    manifest = json.loads((FIXTURE / "bundle" / "manifest.json").read_text())
    section = manifest["inference"]
    assert manifest["version"] == 5 and section["shape"]["layers"] == MODEL_SHAPE.layers
    names = [piece["name"] for piece in section["pieces"]]
    assert "model.embedding.0" in names and "model.head.0" in names and "model.layer0.scales" in names
    assert not any(name.startswith("layer") for name in names)  # the fingerprint's pieces are its own, reused


def test_the_served_model_passes(auditor):
    code, report = auditor["first"]
    assert code == 0, report
    assert report["valid"] and report["agreement"] >= report["threshold"] and report["positions"] == 8
    assert report["link_deviation"] <= 3 / 256
    assert report["checks_passed"][-1] == "ablation"
    assert sorted(report["layer_effects"]) == ["0", "1"]
    assert min(report["layer_effects"].values()) >= MIN_LAYER_EFFECT
    # the served top-5 log-probabilities, compared with the proven logits (exact to 2^-16), at temperature ~1
    assert "logprobs" in report["checks_passed"] and report["logprob_deviation"] <= MAX_LOGPROB_DEVIATION
    assert abs(report["logprob_temperature"] - 1) < 0.05 and report["logprobs_skipped"] is None


def test_a_model_near_the_committed_one_served_fails(auditor, tmp_path):
    """Every weight of the committed model moved by 3 % of its spread: its greedy tokens pass agreement (a light
    fine-tune does the same on a trained model), its log-probabilities are not the committed model's."""
    code, report = verify(linked_copy(auditor["home"], tmp_path / "h"), answers=auditor["answers"]["nearby"])
    assert code == 1 and report["failed_check"] == "logprobs", report
    assert report["agreement"] >= report["threshold"] and report["logprob_deviation"] > MAX_LOGPROB_DEVIATION
    assert "agreement" in report["checks_passed"] and abs(report["logprob_temperature"] - 1) < 0.1


def test_answers_without_log_probabilities_pass_on_greedy_tokens_unless_required(auditor, tmp_path):
    """An API that gives no log-probabilities: checked on greedy tokens alone, and said so; an auditor who
    requires them (`--require-logprobs`) gets a failure instead, since a light fine-tune passes greedy tokens."""
    answers = json.loads(auditor["answers"]["honest"].read_text()) | {"top": None}
    greedy_only = tmp_path / "greedy-only.json"
    greedy_only.write_text(json.dumps(answers))
    home = linked_copy(auditor["home"], tmp_path / "h")
    code, report = verify(home, answers=greedy_only)
    assert code == 0 and "no log-probabilities" in report["logprobs_skipped"], report
    assert "logprobs" not in report["checks_passed"] and report["logprob_deviation"] is None
    result = run_cli("verify-inference", str(FIXTURE / "bundle"), str(FIXTURE / "proofs"), "--answers",
                     str(greedy_only), "--require-logprobs", home=home)  # fmt: skip
    assert result.returncode == 1 and "FAIL logprobs" in result.stdout and "requires" in result.stdout


def test_a_fingerprinted_layer_that_does_nothing_is_refused(auditor):
    """The attacker's committed model is the served one plus a layer whose output factors are zero: its proofs
    are honest and agree with the served model on every position, but without that layer the proven logits do
    not change."""
    code, report = auditor["inert"]  # verified with the auditor's home, so its keys are derived once
    assert code == 1 and report["failed_check"] == "ablation", report
    assert "agreement" in report["checks_passed"] and report["agreement"] >= report["threshold"]
    assert report["layer_effects"]["1"] < MIN_LAYER_EFFECT and "without layer 1" in report["reason"]


def test_weights_crafted_onto_a_fingerprint_fail_against_the_served_model(auditor):
    """An independent model tuned until its z is the honest model's: its bundle is valid and a registry would
    call it the same base model, but what the crafted weights compute is not what the honest model serves."""
    from noseprint.lineage.verdict import SAME, verdict

    code, report = auditor["crafted"]
    assert code == 1 and report["failed_check"] == "agreement", report
    assert "bundle" in report["checks_passed"] and "links" in report["checks_passed"]  # z is proven: compare it
    z = {name: np.array(Bundle.open(path / "bundle").z(), dtype=np.float64) for name, path in
         (("victim", FIXTURE), ("crafted", FIXTURE / CRAFTED))}  # fmt: skip
    z_cosine = float(z["victim"] @ z["crafted"] / (np.linalg.norm(z["victim"]) * np.linalg.norm(z["crafted"])))
    assert verdict(None, z_cosine) == SAME, z_cosine
    assert report["agreement"] < report["threshold"]


def test_an_ablation_proof_about_another_hidden_state_is_refused(auditor, tmp_path):
    """The model's own head proof (on the last hidden state) put in place of the head proof without the last
    layer: the logits would differ, but the proof is not about the hidden state entering that layer."""
    proofs = tmp_path / "proofs"
    shutil.copytree(FIXTURE / "proofs", proofs)
    shutil.copyfile(proofs / "proofs" / "p0.head0.json", proofs / "proofs" / "p0.without1.head0.json")
    code, report = verify(linked_copy(auditor["home"], tmp_path / "h"), proofs, auditor["answers"]["honest"])
    assert code == 1 and report["failed_check"] == "links" and "p0.without1.head0" in report["reason"], report


def test_missing_ablation_proofs_are_refused(auditor, tmp_path):
    proofs = tmp_path / "proofs"
    shutil.copytree(FIXTURE / "proofs", proofs)
    listing = json.loads((proofs / "inference.json").read_text())
    listing["proofs"] = [p for p in listing["proofs"] if ".without" not in p["name"]]
    (proofs / "inference.json").write_text(json.dumps(listing))
    code, report = verify(linked_copy(auditor["home"], tmp_path / "h"), proofs, auditor["answers"]["honest"])
    assert code == 1 and report["failed_check"] == "links" and "this challenge needs" in report["reason"], report


def test_another_served_model_fails(auditor, tmp_path):
    code, report = verify(linked_copy(auditor["home"], tmp_path / "h"), answers=auditor["answers"]["other"])
    assert code == 1 and report["failed_check"] == "agreement", report
    assert report["agreement"] < report["threshold"]


def test_answers_to_another_challenge_are_refused(auditor, tmp_path):
    forged = json.loads(auditor["answers"]["honest"].read_text())
    forged["challenge_digest"] = "0" * 64
    path = tmp_path / "answers.json"
    path.write_text(json.dumps(forged))
    code, report = verify(linked_copy(auditor["home"], tmp_path / "h"), answers=path)
    assert code == 1 and report["failed_check"] == "challenge", report


def test_a_changed_link_between_proofs_is_refused(auditor, tmp_path):
    """The first layer's proof listed as giving another hidden state (the second layer's)."""
    proofs = tmp_path / "proofs"
    shutil.copytree(FIXTURE / "proofs", proofs)
    listing = json.loads((proofs / "inference.json").read_text())
    layers = [p for p in listing["proofs"] if p["kind"] == "layer"]
    layers[0]["output_points"] = layers[1]["output_points"]
    (proofs / "inference.json").write_text(json.dumps(listing))
    code, report = verify(linked_copy(auditor["home"], tmp_path / "h"), proofs, auditor["answers"]["honest"])
    assert code == 1 and report["failed_check"] == "links", report


def test_a_proof_moved_to_another_layer_is_refused(auditor, tmp_path):
    """The second layer's proof file put in the first layer's place."""
    proofs = tmp_path / "proofs"
    shutil.copytree(FIXTURE / "proofs", proofs)
    shutil.copyfile(proofs / "proofs" / "p0.layer1.json", proofs / "proofs" / "p0.layer0.json")
    code, report = verify(linked_copy(auditor["home"], tmp_path / "h"), proofs, auditor["answers"]["honest"])
    assert code == 1 and report["failed_check"] == "links", report


def test_a_model_proven_part_by_part_passes(auditor):
    """The chunked fixture: each layer as its attention and two FFN blocks, linked by the running residual."""
    code, report = auditor["chunked"]
    assert code == 0 and report["valid"], report
    assert report["agreement"] >= report["threshold"] and "logprobs" in report["checks_passed"], report
    names = [p["name"] for p in json.loads((FIXTURE / CHUNKED / "proofs" / "inference.json").read_text())["proofs"]]
    assert {"p0.layer0.attention0", "p0.layer0.ffn0", "p0.layer0.ffn1", "p0.without0.layer1.ffn1"} <= set(names)
    assert "p0.layer0" not in names


def chunked_copy(tmp_path):
    proofs = tmp_path / "proofs"
    shutil.copytree(FIXTURE / CHUNKED / "proofs", proofs)
    return proofs


def verify_chunked(auditor, tmp_path, proofs):
    home = linked_copy(auditor["home"], tmp_path / "h")
    return verify(home, proofs, auditor["answers"]["chunked"], bundle=FIXTURE / CHUNKED / "bundle")


def test_layer_parts_swapped_are_refused(auditor, tmp_path):
    """The second FFN block's proof in the first's place: it takes another block's weights and another residual."""
    proofs = chunked_copy(tmp_path)
    shutil.copyfile(proofs / "proofs" / "p0.layer1.ffn1.json", proofs / "proofs" / "p0.layer1.ffn0.json")
    code, report = verify_chunked(auditor, tmp_path, proofs)
    assert code == 1 and report["failed_check"] == "links" and "p0.layer1.ffn0" in report["reason"], report


def test_a_layer_part_left_out_of_the_residual_is_refused(auditor, tmp_path):
    """The listing claims the first FFN block's output is the attention's (its block skipped, as an owner who
    could not prove it might): the proof's own output commitment says otherwise."""
    proofs = chunked_copy(tmp_path)
    listing = json.loads((proofs / "inference.json").read_text())
    entries = {p["name"]: p for p in listing["proofs"]}
    entries["p0.layer0.ffn0"]["output_points"] = entries["p0.layer0.attention0"]["output_points"]
    (proofs / "inference.json").write_text(json.dumps(listing))
    code, report = verify_chunked(auditor, tmp_path, proofs)
    assert code == 1 and report["failed_check"] == "links" and "p0.layer0.ffn0" in report["reason"], report


@pytest.mark.parametrize(
    ("parts", "reason"),
    [
        ({"attention": 1, "ffn": 3}, "do not tile"),  # three FFN blocks a part: the layer has two
        (None, "this challenge needs"),  # claimed whole: the listed part proofs are not the layer proofs
    ],
)
def test_layer_parts_that_are_not_the_proofs_are_refused(auditor, tmp_path, parts, reason):
    proofs = chunked_copy(tmp_path)
    listing = json.loads((proofs / "inference.json").read_text())
    listing["layer_parts"] = parts
    (proofs / "inference.json").write_text(json.dumps(listing))
    code, report = verify_chunked(auditor, tmp_path, proofs)
    assert code == 1 and report["failed_check"] == "links" and reason in report["reason"], report


def test_a_bundle_below_the_inference_logrows_is_refused_clearly(proven, tmp_path):
    """The session's bundles are proven at logrows 12, where a layer proof needs more memory than this machine
    has (measured: killed at 23 GB): the owner is told why, and how to prove again, before anything is built."""
    owner = linked_copy(proven["owner"], tmp_path / "owner")
    bundle, model = proven["bundles"][0], proven["models"][0]
    challenge = tmp_path / "challenge.json"
    run_cli("challenge", str(bundle), "--seed", "ab" * 16, "--prompts", "1", "--length", "4", "--out",
            str(challenge), home=owner, check=True)  # fmt: skip
    result = run_cli("prove-inference", str(bundle), str(model), "--challenge", str(challenge), "--out",
                     str(tmp_path / "proofs"), home=owner)  # fmt: skip
    assert result.returncode == 2 and "inference proofs need at least 14" in result.stderr, result.stderr
    assert not (tmp_path / "proofs").exists()


def _forged_bundle(tmp_path, change) -> object:
    """A copy of the fixture bundle whose manifest `change` rewrites (the whole-model digest recomputed, as
    anyone can: it is not signed here)."""
    from noseprint.core.whole_model import whole_model_digest

    bundle = tmp_path / "bundle"
    shutil.copytree(FIXTURE / "bundle", bundle)
    manifest = json.loads((bundle / "manifest.json").read_text())
    change(manifest["inference"])
    section = manifest["inference"]
    commitment = manifest["commitment"]
    section["digest"] = whole_model_digest(commitment["scheme"], commitment["digest"], section["pieces"])
    (bundle / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return bundle


def _verify_bundle_copy(auditor, tmp_path, bundle):
    result = run_cli(
        "verify-inference", str(bundle), str(FIXTURE / "proofs"), "--answers", str(auditor["answers"]["honest"]),
        "--json", home=linked_copy(auditor["home"], tmp_path / "h"),
    )  # fmt: skip
    return result.returncode, json.loads(result.stdout)


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda s: s.update(fingerprinted_layers=[1, 1]), "not the model's last ones"),
        (lambda s: s["shape"].update(layers=4), "not the model's last ones"),
        (lambda s: s.update(scale_bits=12), "committed at 2^12"),
    ],
    ids=["fingerprint-layers-detached", "more-layers-claimed", "scale-bits"],
)
def test_a_forged_whole_model_commitment_is_refused(auditor, tmp_path, change, reason):
    code, report = _verify_bundle_copy(auditor, tmp_path, _forged_bundle(tmp_path, change))
    assert code == 1 and reason in report["reason"], report


def test_padded_commitment_lists_are_refused_before_the_swap(auditor, tmp_path):
    """A hidden state listed with an extra point: EZKL's swap would write the first one only, so the count is
    checked first."""
    proofs = tmp_path / "proofs"
    shutil.copytree(FIXTURE / "proofs", proofs)
    listing = json.loads((proofs / "inference.json").read_text())
    embed = next(p for p in listing["proofs"] if p["kind"] == "embed")
    embed["output_points"] = embed["output_points"] * 2
    (proofs / "inference.json").write_text(json.dumps(listing))
    code, report = verify(linked_copy(auditor["home"], tmp_path / "h"), proofs, auditor["answers"]["honest"])
    assert code == 1 and "wrong number of commitment points" in report["reason"], report


def test_the_registry_records_a_check_it_verified_itself(auditor, tmp_path):
    """`registry inference` with real proofs: it re-verifies them against the entry's stored bundle, records
    the passed check, and refuses the attacker's (their bundle's entry, their proofs, their served model)."""
    from tests.test_challenge import registered

    db = f"sqlite:///{tmp_path / 'registry.sqlite3'}"
    bundles = [FIXTURE / "bundle", FIXTURE / INERT / "bundle"]
    registered(db, tmp_path / "registry-key", [(b / "manifest.json").read_bytes() for b in bundles], bundles)
    home = linked_copy(auditor["home"], tmp_path / "h")
    attacker = run_cli("registry", "inference", "2", str(FIXTURE / INERT / "proofs"), "--answers",
                       str(auditor["answers"]["inert"]), "--db", db, "--json", home=home)  # fmt: skip
    assert attacker.returncode == 1 and "ablation" in attacker.stdout + attacker.stderr
    result = run_cli("registry", "inference", "1", str(FIXTURE / "proofs"), "--answers",
                     str(auditor["answers"]["honest"]), "--db", db, "--json", home=home)  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    recorded = json.loads(result.stdout)
    assert recorded["entry_id"] == 1 and recorded["seed_source"] == "auditor" and recorded["agreement"] >= 0.75
    assert 0 <= recorded["logprob_deviation"] <= MAX_LOGPROB_DEVIATION
    shown = json.loads(run_cli("registry", "show", "1", "--db", db, "--json", home=home, check=True).stdout)
    assert [check["agreement"] for check in shown["inference_checks"]] == [recorded["agreement"]]
