"""Claims: a suite's bounds on its runs, checked against independent arithmetic, never met by a
failed run, and shown on the published page of a named plain suite."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from disentbench import claims
from disentbench.cli import main
from disentbench.config import ConfigError
from disentbench.suites import load_suite

from test_cli import _sets
from test_results import _record

CLAIMS = [
    {"method": "lord", "dataset": "synth3d", "text": "low leakage", "value": "leakage.class_from_content",
     "max": {"key": "leakage.floor", "plus": 0.05}},
    {"method": "lord", "dataset": "synth3d", "text": "follows content", "value": "swap.content_accuracy",
     "min": {"key": "swap.recon", "times": 0.85}},
    {"method": "lord", "dataset": "synth3d", "text": "above 0.4", "value": "swap.content_accuracy", "min": 0.4},
]


def _run(seed, leak, floor, content, recon, status="finished"):
    r = _record(f"synth3d/lord/seed{seed}-abc123abc123", seed=seed, status=status)
    r["metrics"]["leakage"] = {"status": "ok", "values": {"class_from_content": leak, "floor": floor}}
    r["metrics"]["swap"] = {"status": "ok", "values": {"content_accuracy": content, "recon": recon}}
    return r


def test_claims_hold_on_the_seed_mean_and_name_their_bound():
    parsed = claims.parse(CLAIMS, "t")
    runs = [_run(0, 0.02, 0.01, 0.45, 0.50), _run(1, 0.06, 0.01, 0.39, 0.50)]
    v = claims.judge(parsed, runs)
    # means: leakage 0.04 <= 0.01 + 0.05; content 0.42 >= 0.85 * 0.50 = 0.425 fails; 0.42 >= 0.4 holds
    assert [x.holds for x in v] == [True, False, True]
    assert v[0].measured == pytest.approx(0.04) and v[0].seeds == 2
    assert "0.85 × `swap.recon` = 0.425" in v[1].bound
    text = "\n".join(claims.render(v))
    assert "2 of 3 hold" in text and "**no**" in text


def test_a_failed_or_unmeasured_run_cannot_meet_a_claim():
    parsed = claims.parse(CLAIMS[2:], "t")
    failed = _run(0, 0.0, 0.0, 0.99, 0.99, status="failed")
    failed["error"] = {"type": "GeneratorCollapsed", "message": "spread 0.01"}
    (v,) = claims.judge(parsed, [failed, _run(1, 0.0, 0.0, 0.99, 0.99)])
    assert v.holds is None and "GeneratorCollapsed" in v.reason
    unmeasured = _run(0, 0.0, 0.0, 0.9, 0.9)
    unmeasured["metrics"]["swap"] = {"status": "unavailable", "reason": "judges below 0.5", "values": {}}
    (v,) = claims.judge(parsed, [unmeasured])
    assert v.holds is None and "judges below 0.5" in v.reason
    (v,) = claims.judge(parsed, [])
    assert v.holds is None and v.reason == "not run"
    other = _run(1, 0.0, 0.0, 0.9, 0.9)
    other["config_hash"] = "fedcba987654"  # another budget of the same method: not a seed of the first
    (v,) = claims.judge(parsed, [_run(0, 0.0, 0.0, 0.9, 0.9), other])
    assert v.holds is None and "2 configurations" in v.reason


@pytest.mark.parametrize("bad, message", [
    ({"method": "lord", "dataset": "d", "text": "t", "value": "swap.x"}, "needs a bound"),
    ({"method": "lord", "dataset": "d", "text": "t", "value": "swapx", "min": 1}, "not a metric key"),
    ({"method": "lord", "dataset": "d", "text": "t", "value": "swap.x", "min": {"times": 2}}, "a bound is a number"),
    ({"method": "lord", "dataset": "d", "text": "t", "value": "swap.x", "min": 1, "typo": 1}, "unknown key"),
])
def test_malformed_claims_are_refused(bad, message):
    with pytest.raises(ConfigError, match=message):
        claims.parse([bad], "t")


def test_built_in_cpu_suite_states_the_issue_claims():
    from disentbench.plugins import load_registries
    from disentbench.suites import validate

    regs = load_registries()
    suite = regs.suites.get("cpu").load()
    validate(suite, regs)
    keyed = {(c.method, c.value) for c in suite.claims}
    assert ("lord", "swap.copy_rate") in keyed and ("lord", "leakage.class_from_content") in keyed
    assert {m for m, k in keyed if k == "swap.content_accuracy"} == {"lord", "drnet", "mlvae", "cyclevae"}


def test_a_named_plain_suite_publishes_its_own_page_with_its_claims(tmp_path, monkeypatch):
    suite_file = tmp_path / "mine.toml"
    suite_file.write_text('description = "d"\nmethods = ["lord"]\ndatasets = ["synth3d"]\nmetrics = ["reconstruction"]\n'
                          '[[claims]]\nmethod = "lord"\ndataset = "synth3d"\ntext = "reconstructs"\n'
                          'value = "reconstruction.mse"\nmax = 10.0\n')
    assert load_suite(suite_file).claims[0].max.number == 10.0
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DISENTBENCH_PLUGINS", "testplugins")
    from disentbench.cli import _plain_page

    page = _plain_page(type("A", (), {"publish": True})(), load_suite(suite_file, name="mine"))
    assert page == {"page": "mine.md", "collections": ["mine"], "claims": "mine"}
    assert _plain_page(type("A", (), {"publish": "x"})(), None) == {"page": "README.md", "collections": ["x"]}
    # another collection of the suite's runs (e.g. a budget curve) gets its page, not the suite's claims
    assert _plain_page(type("A", (), {"publish": "mine-budget"})(), load_suite(suite_file, name="mine")) == \
        {"page": "mine-budget.md", "collections": ["mine-budget"]}
    # end to end through the built-in suite machinery: --scale NAME = the plain suite NAME's settings
    rc = main(["run", "--scale", "quick", "--methods", "lord", "--datasets", "synth3d", "--metrics", "reconstruction",
               "--device", "cpu", "--quiet", *_sets(), "--set", "train.max_images=64"])
    assert rc == 0
    config = json.loads(next((tmp_path / "runs").glob("synth3d/lord/*/config.json")).read_text())["config"]
    assert config["method"]["lr_generator"] == 1e-3 and config["method"]["lr_latent"] == 1e-2  # the quick suite's


def test_published_plain_page_checks_its_claims_and_is_linked_from_the_index(tmp_path):
    """results/pages.json → leaderboard/<collection>.md with the claims table; README.md links it."""
    from disentbench import results
    from disentbench.cli import render_published
    from disentbench.plugins import load_registries

    root = tmp_path / "results"
    for method, content in (("lord", 0.45), ("drnet", 0.01)):
        r = _record(f"cars3d/{method}/seed0-abc123abc123")
        r["metrics"]["swap"] = {"status": "ok", "values": {"content_accuracy": content, "recon_content_accuracy": 0.5,
                                                          "class_accuracy": 0.6, "copy_rate": 0.01, "chance_copy": 0.01},
                                "directions": {"content_accuracy": "max"}}
        d = root / "cpu" / r["run_id"]
        d.mkdir(parents=True)
        (d / "record.json").write_text(json.dumps(r))
    results.add_page(root, {"page": "cpu.md", "collections": ["cpu"], "claims": "cpu"})
    results.add_page(root, {"page": "README.md", "collections": []})
    written = render_published(load_registries(), root, tmp_path / "lb")
    page = (tmp_path / "lb" / "cpu.md").read_text()
    assert {p.name for p in written} == {"cpu.md", "README.md"}
    assert "## Claims" in page and "4 of 9 hold" in page  # lord: 3 swap claims hold; drnet 0.01 < 0.05
    assert "cannot tell: `leakage.class_from_content` not measured" in page
    assert "cannot tell: not run" in page  # mlvae and cyclevae have no runs here
    assert "[cpu](cpu.md)" in (tmp_path / "lb" / "README.md").read_text()
