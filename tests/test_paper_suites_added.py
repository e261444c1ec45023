"""The seed tables added as suites (LORD Tables 4 and 5, C-S fusion Tables 3 and 4, Esser et al.
Table 1): their published numbers as typed from the papers; columns that read what a method
recorded (``method_info.PATH``) and columns disentbench cannot measure (``unavailable``)."""
from __future__ import annotations

import textwrap

import pytest

from disentbench import paper_tables as pt
from disentbench.config import ConfigError
from disentbench.plugins import load_registries
from disentbench.runner import plan_suite
from disentbench.suites import load_suite, validate

import testplugins

REGS = load_registries()
ADDED = ("lord-table4", "lord-table5", "csfusion-table3", "csfusion-table4", "esser-table1")


def _table(name):
    suite = REGS.suites.get(name).load()
    return suite, {r.key: {c: r.published[c].value for c in r.published} for r in suite.rows}


@pytest.mark.parametrize("name", ADDED)
def test_added_suites_validate_and_plan_at_every_scale(name):
    suite = REGS.suites.get(name).load()
    assert suite.is_paper_table and suite.citation["source"]
    validate(suite, REGS)
    for scale in ("paper", "quick"):
        plan = plan_suite(suite, REGS, scale=scale, check_data=False, progress=False)
        for cell in plan.to_run():
            assert "method_info" not in cell.run.metrics  # not a metric the runner computes
            if scale == "quick":
                assert cell.run.train.max_images > 0


def test_published_numbers_of_lord_tables_4_and_5():
    _, t4 = _table("lord-table4")
    assert t4 == {"stargan": {"rafd": 2.2}, "lord": {"rafd": 1.8}, "real": {"rafd": 0.8}}
    suite, t5 = _table("lord-table5")
    cols = ["rec-train", "rec-test", "reg-train", "reg-test", "total-train", "total-test"]
    assert [c.key for c in suite.columns] == cols
    assert {k: [v[c] for c in cols] for k, v in t5.items()} == {
        "amortized-kl": [40.53, 50.90, 3.13, 3.20, 40.54, 50.90],
        "amortized-noise": [26.62, 42.02, 57.80, 57.25, 26.68, 42.08],
        "semi-amortized-kl": [16.07, 45.41, 10.24, 9.23, 16.08, 45.42],
        "semi-amortized-noise": [13.29, 44.39, 55.47, 51.95, 13.34, 44.44],
        "lord": [13.88, 44.78, 56.17, 54.65, 13.94, 44.83]}
    # the paper's total is reconstruction + λ·regularization, λ = 0.001, to its rounding
    for row in t5.values():
        for split in ("train", "test"):
            assert row[f"total-{split}"] == pytest.approx(row[f"rec-{split}"] + 0.001 * row[f"reg-{split}"], abs=0.011)


def test_published_numbers_of_csfusion_tables_3_and_4_and_their_ablation_options():
    suite3, t3 = _table("csfusion-table3")
    assert t3 == {"no-bottleneck": {"chairs": 0.280}, "csfusion": {"chairs": 0.190}}
    assert suite3.rows[0].settings == {"weight_bottleneck": 0.0}
    suite4, t4 = _table("csfusion-table4")
    assert t4 == {"no-instance": {"celeba": 0.165}, "csfusion": {"celeba": 0.161}}
    # the quick suite turns L_ID off; the full row must turn it back on at every scale
    plan = plan_suite(suite4, REGS, scale="quick", check_data=False, progress=False)
    weights = {tc.row: tc.runs[0].run.method["weight_instance"] for tc in plan.cells.values()}
    assert weights == {"no-instance": 0.0, "csfusion": 1.0}


def test_published_numbers_of_esser_table1():
    suite, t1 = _table("esser-table1")
    assert [r.settings["variant"] for r in suite.rows] == ["variational", "adversarial", "equal", "fixed", "adaptive"]
    assert [[v["i-t"], v["i-t-prime"], v["l-rec"]] for v in t1.values()] == [
        [0.1255, 0.1239, 3.9350], [0.1254, 0.8727, 2.9818], [0.0919, 0.1247, 3.9615],
        [0.1258, 0.4096, 3.2504], [0.1225, 0.1201, 3.5279]]


def test_esser_sprites_reference_row_names_the_work_cited_as_15():
    """[15] lies between Esser et al. [12] and Harsh Jha et al. [16] in the alphabetical list and
    "assumes that α is given in the form of class labels": Hadad et al.'s Two-Step Disentanglement
    Method (ATSDM), not Szabó et al. ([51]) nor Gonzalez-Garcia et al."""
    suite = REGS.suites.get("esser-sprites").load()
    row = next(r for r in suite.rows if r.key == "atsdm")
    assert "Hadad" in row.reference and "Two-Step Disentanglement" in row.reference
    assert "Gonzalez" not in row.reference and "[15]" in row.label


# -- method_info columns and unavailable columns, end to end ------------------------------------

SUITE = """\
description = "method_info and unavailable columns"
seeds = [0]

[citation]
paper = "Doe, A Paper, 2020"
table = "Table 1"

[scales.quick]
seeds = [0]

[scales.quick.settings.synth3d]
resolution = 32
n_train_classes = 6
n_test_classes = 3
n_azimuths = 4
n_elevations = 2

[scales.quick.settings.eval]
grid_size = 3
check_min_spread = 0.0  # 2 training steps learn nothing: the generator check would (rightly) fail the run
check_max_mse = 0.0

[scales.quick.settings.train]
max_steps = 2

[[columns]]
key = "loss"
label = "final loss"
dataset = "synth3d"
metric = "method_info.last_epoch.ae.loss"

[[columns]]
key = "missing"
label = "not recorded"
dataset = "synth3d"
metric = "method_info.last_epoch.ae.nothing"

[[columns]]
key = "faces"
label = "faces"
dataset = "nosuchdata"
metric = "nosuchmetric.error"
unavailable = "no such dataset here"

[[rows]]
key = "ae"
label = "AE"
method = "tiny-ae-test"
published = { loss = 0.05, missing = 1.0, faces = 2.0 }
"""


def test_method_info_and_unavailable_columns_end_to_end(tmp_path):
    from disentbench.runner import execute

    regs = load_registries(plugins=[testplugins])
    path = tmp_path / "mi.toml"
    path.write_text(SUITE)
    suite = load_suite(path, name="mi")
    validate(suite, regs)  # the unavailable column's unknown dataset and metric are not looked up
    assert suite.datasets == ["synth3d"] and suite.metrics == []
    plan = plan_suite(suite, regs, scale="quick", out=tmp_path / "runs", check_data=False, progress=False)
    [cell] = plan.to_run()
    assert cell.run.metrics == {}
    record = execute(cell, regs)
    assert record["status"] == "finished", record.get("error")
    logged = record["method_info"]["last_epoch"]["ae"]["loss"]
    out = pt.render(suite, plan, [record], pt.MetricInfo.from_registries(regs))
    row = next(line for line in out.splitlines() if line.startswith("| AE "))
    cells = [c.strip() for c in row.split("|")[1:-1]]
    assert cells[1].startswith(f"{pt.fmt(logged)} (0.05)")
    assert cells[2].startswith("n/a (1)") and "recorded no finite number at method_info.last_epoch.ae.nothing" in out
    assert cells[3].startswith("n/a (2)") and "not measurable in disentbench: no such dataset here" in out


def test_a_method_info_path_must_be_dotted_names(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text(SUITE.replace('metric = "method_info.last_epoch.ae.loss"', 'metric = "method_info..loss"'))
    with pytest.raises(ConfigError, match="method_info.last_epoch.latent.reconstruction"):
        load_suite(path)
