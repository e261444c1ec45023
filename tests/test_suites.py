"""Paper suites: the format and its errors, validation against the registries, planning (shared
runs, reference rows, stand-ins, layered settings), the rendered table (against expected text from
fixed records), training reuse between runs that differ only in metrics, and the CLI end to end
with a suite shipped by a plugin."""
from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from disentbench import paper_tables as pt
from disentbench.config import ConfigError
from disentbench.plugins import load_registries
from disentbench.registry import UnknownNameError
from disentbench.runner import plan_suite
from disentbench.suites import load_suite, parse_published, scale_settings, validate

REGS = load_registries()
PAPER_SUITES = [s.name for s in REGS.suites if s.load().is_paper_table]

SUITE = """\
description = "A small paper table for tests"
seeds = [0, 1]
note = "all methods share one architecture"

[citation]
paper = "Doe & Roe, A Paper, 2020"
table = "Table 9"
caption = "Transfer error and leakage"
source = "paper.txt"

[scales.quick]
description = "tiny settings"
seeds = [0, 1]

[scales.quick.settings.train]
max_steps = 2

[[columns]]
key = "mse"
group = "Synth"
label = "MSE"
dataset = "synth3d"
metric = "transfer_error.mse"

[[columns]]
key = "lpips"
group = "Synth"
label = "LPIPS"
dataset = "synth3d"
metric = "lpips_transfer.lpips"
fallback = "lpips_random.lpips"

[[columns]]
key = "cars"
label = "Cars3D y ← c"
dataset = "cars3d"
metric = "leakage.class_from_content"
stand_in = "synth3d"
note = "a column note"

[[rows]]
key = "ae"
label = "Autoencoder"
method = "autoencoder"
published = { mse = 0.05, lpips = 0.30, cars = 0.90 }

[[rows]]
key = "drnet"
label = "DrNet"
method = "drnet"
published = { mse = 0.02, lpips = 0.20, cars = "< 0.01" }

[[rows]]
key = "lord"
label = "LORD"
method = "lord"
published = { mse = 0.01, lpips = 0.10, cars = "< 0.01" }

[[rows]]
key = "other"
label = "Other et al."
reference = "not in disentbench"
published = { mse = 0.03, lpips = "—", cars = 0.5 }

[[rows]]
key = "chance"
label = "Chance"
method = "lord"
rank = false
measure = { cars = "leakage.chance_class" }
published = { mse = "—", lpips = "—", cars = "< 0.01" }
"""


def write_suite(tmp_path: Path, text: str = SUITE, name: str = "tiny"):
    path = tmp_path / f"{name}.toml"
    path.write_text(text)
    return load_suite(path, name=name)


def edited(old: str, new: str) -> str:
    assert old in SUITE, old
    return SUITE.replace(old, new, 1)


# -- the format --------------------------------------------------------------------------------

def test_published_values_as_the_papers_print_them():
    assert parse_published(0.137, "x").value == 0.137
    bound = parse_published("< 0.01", "x")
    assert (bound.value, bound.bound, bound.text) == (0.01, "<", "< 0.01")
    spread = parse_published("24.6 ± 10.3", "x")
    assert (spread.value, spread.spread) == (24.6, 10.3)
    assert parse_published("—", "x").value is None and "not reported" in parse_published("—", "x").missing
    assert parse_published("figure", "x").missing.startswith("the paper shows this only in a figure")
    for bad in ("about 3", True, [1], "nan", float("nan")):
        with pytest.raises(ConfigError, match="published value"):
            parse_published(bad, "rows[0]")


@pytest.mark.parametrize("old, new, message", [
    ("published = { mse = 0.05, lpips = 0.30, cars = 0.90 }", "published = { mse = 0.05, lpips = 0.30 }",
     "no published value for column(s) cars"),
    ("published = { mse = 0.05, lpips = 0.30, cars = 0.90 }", "published = { mse = 0.05, lpips = 0.30, cars = 0.9, x = 1 }",
     "unknown column(s) ['x']"),
    ("published = { mse = 0.05, lpips = 0.30, cars = 0.90 }", "", "missing the paper's numbers"),
    ('cars = "< 0.01" }\n\n[[rows]]\nkey = "lord"', 'cars = "about 0" }\n\n[[rows]]\nkey = "lord"', "cannot read"),
    ('key = "drnet"', 'key = "ae"', "two rows have the key 'ae'"),
    ('method = "drnet"\n', "", "give the registered method"),
    ('measure = { cars = "leakage.chance_class" }', 'measure = { carz = "leakage.chance_class" }', "column 'carz'"),
    ('metric = "transfer_error.mse"', 'metric = "transfer_error"', "must name a metric and one of its keys"),
    ('table = "Table 9"\n', "", "[citation] needs 'table'"),
    ('note = "a column note"', 'nte = "typo"', "unknown key(s) ['nte']"),
    ('description = "A small paper table for tests"\n', 'description = "x"\nmethods = ["lord"]\n', "remove 'methods'"),
])
def test_structural_errors_are_clear(tmp_path, old, new, message):
    with pytest.raises(ConfigError) as exc:
        write_suite(tmp_path, edited(old, new))
    assert message in str(exc.value)


def test_plain_suites_still_load(tmp_path):
    quick = REGS.suites.get("quick").load()
    assert not quick.is_paper_table and quick.methods == "all" and quick.datasets == ["synth3d"]
    assert quick.settings["lord"]["epochs"] > 0


@pytest.mark.parametrize("old, new, error, message", [
    ('method = "drnet"', 'method = "drnett"', UnknownNameError, "Did you mean 'drnet'?"),
    ('dataset = "cars3d"', 'dataset = "cars4d"', UnknownNameError, "unknown dataset 'cars4d'"),
    ('metric = "transfer_error.mse"', 'metric = "transfer_eror.mse"', UnknownNameError, "unknown metric"),
    ('metric = "transfer_error.mse"', 'metric = "transfer_error.rmse"', ConfigError, "has no key 'rmse'"),
    ("max_steps = 2", "max_step = 2", ConfigError, "scale 'quick'"),
    ('published = { mse = 0.05, lpips = 0.30, cars = 0.90 }',
     'settings = { epoch = 3 }\npublished = { mse = 0.05, lpips = 0.30, cars = 0.90 }', ConfigError, "unknown option(s) epoch"),
    ('stand_in = "synth3d"', 'stand_in = "synth3d"\nsettings = { lord = { class_dim = "big" } }', ConfigError,
     "expected an integer"),
])
def test_validation_against_the_registries(tmp_path, old, new, error, message):
    suite = write_suite(tmp_path, edited(old, new))
    with pytest.raises(error) as exc:
        validate(suite, REGS)
    assert message in str(exc.value)


def test_an_unknown_scale_says_which_exist(tmp_path):
    suite = write_suite(tmp_path)
    with pytest.raises(ConfigError, match="defines no scale 'fast'; it defines: paper, quick"):
        plan_suite(suite, REGS, scale="fast")


@pytest.mark.parametrize("name", PAPER_SUITES)
def test_every_shipped_paper_suite_validates_at_every_scale_and_plans(name):
    suite = REGS.suites.get(name).load()
    assert suite.citation["paper"] and suite.citation["table"] and suite.citation.get("source")
    assert "quick" in suite.scales and len(suite.seeds) == 3  # the paper's seeds; quick shrinks them
    validate(suite, REGS)
    plan = plan_suite(suite, REGS, scale="quick", check_data=False)
    assert set(plan.cells) == {(r.key, c.key) for r in suite.rows for c in suite.columns}
    for row in suite.rows:
        for col in suite.columns:
            tc = plan.cells[(row.key, col.key)]
            assert bool(tc.skipped) or tc.runs, (row.key, col.key)
            assert all(c.run.train.max_images > 0 for c in tc.runs)  # quick is bounded (a budget)


def test_the_issue_lists_these_suites():
    for name in ("lord-table1", "lord-table2", "lord-table3", "lord-v1-table1", "lord-v1-table2", "csfusion-table1",
                 "csfusion-table2", "esser-table2", "esser-sprites", "xiao-table1", "xiao-table2"):
        assert name in PAPER_SUITES


def test_published_numbers_of_lord_table1_as_typed_from_the_paper():
    suite = REGS.suites.get("lord-table1").load()
    table = {r.key: [r.published[c.key].value for c in suite.columns] for r in suite.rows}
    assert table == {"szabo": [0.137, 0.417, 0.214, 0.331], "cyclevae": [0.141, 0.197, 0.202, 0.228],
                     "mlvae": [0.132, 0.210, 0.173, 0.222], "drnet": [0.095, 0.166, 0.152, 0.229],
                     "lord": [0.078, 0.117, 0.106, 0.197]}


# -- planning ---------------------------------------------------------------------------------

def test_plan_shares_runs_between_columns_and_layers_settings(tmp_path):
    suite = write_suite(tmp_path, edited('key = "drnet"\nlabel = "DrNet"\nmethod = "drnet"\n',
                                         'key = "drnet"\nlabel = "DrNet"\nmethod = "drnet"\nsettings = { lr = 0.5 }\n'))
    plan = plan_suite(suite, REGS, scale="quick", overrides={"drnet": {"batch_size": 6}}, check_data=False)
    ae = plan.cells[("ae", "mse")].runs
    assert [c.seed for c in ae] == [0, 1]
    assert [c.run_id for c in ae] == [c.run_id for c in plan.cells[("ae", "lpips")].runs]  # one run, two columns
    assert [c.run_id for c in ae] == [c.run_id for c in plan.cells[("ae", "cars")].stand_in_runs]
    assert sorted(ae[0].run.metrics) == ["leakage", "lpips_random", "lpips_transfer", "transfer_error"]
    drnet = plan.cells[("drnet", "mse")].runs[0].run.semantic()
    assert drnet["method"]["lr"] == 0.5 and drnet["method"]["batch_size"] == 6  # row settings, then --set
    assert drnet["train"]["max_steps"] == 2  # the scale's
    assert pt.overrides_note(plan) == ("settings differ: set on the command line: drnet.batch_size=6; "
                                       "no Δ against the published numbers (Kendall τ still compares the ranking)")
    assert plan.cells[("other", "mse")].skipped == "not run in disentbench: not in disentbench"
    # options of how runs go change no number: not a "settings differ" note, and Δ stays
    run_options = {"local": {"jobs": 1}, "train": {"num_threads": 2}}
    plan_opts = plan_suite(suite, REGS, scale="quick", overrides=run_options, check_data=False)
    assert pt.changed_settings(plan_opts) == [] and pt.overrides_note(plan_opts) == ""
    both = plan_suite(suite, REGS, scale="quick", overrides={**run_options, "drnet": {"batch_size": 6}}, check_data=False)
    assert pt.changed_settings(both) == ["drnet.batch_size=6"]
    assert pt.changed_settings(plan_suite(suite, REGS, scale="quick", overrides={"train": {"max_steps": 3}},
                                          check_data=False)) == ["train.max_steps=3"]
    # the chance row reads LORD's runs: no run of its own
    assert [c.run_id for c in plan.cells[("chance", "cars")].runs] == [c.run_id for c in plan.cells[("lord", "cars")].runs]
    assert len(plan.to_run()) == 3 * 2 * 2  # 3 methods x (synth3d, cars3d) x 2 seeds
    plan.stand_ins = False
    assert len(plan.to_run(methods=["lord"])) == 4


def test_plan_skips_missing_data_unless_stand_ins_and_methods_without_weights(tmp_path, monkeypatch):
    monkeypatch.setenv("DISENTBENCH_OFFLINE", "1")
    suite = write_suite(tmp_path)
    plan = plan_suite(suite, REGS, scale="quick", data_dir=tmp_path / "empty")
    assert "cars3d" in plan.cells[("ae", "cars")].data_missing and not plan.cells[("ae", "mse")].data_missing
    datasets = {c.dataset for c in plan.to_run()}
    assert datasets == {"synth3d"}
    with_stand_ins = plan_suite(suite, REGS, scale="quick", data_dir=tmp_path / "empty", stand_ins=True)
    assert {c.run_id for c in with_stand_ins.to_run()} == {c.run_id for c in plan.to_run()}  # shared with synth3d
    rows = SUITE.replace('method = "drnet"', 'method = "idpose"')  # needs RotNet weights, absent in tests
    plan = plan_suite(write_suite(tmp_path, rows, name="w"), REGS, scale="quick", check_data=False)
    assert "rotnet_alexnet" in plan.cells[("drnet", "mse")].skipped


def test_scale_settings_from_another_suite(tmp_path):
    text = SUITE.replace('[scales.quick]\ndescription = "tiny settings"', '[scales.quick]\ndescription = "tiny"\nsettings_from = "quick"')
    suite = write_suite(tmp_path, text)
    settings, seeds = scale_settings(suite, "quick", REGS)
    quick = REGS.suites.get("quick").load().settings
    assert settings["lord"] == quick["lord"] and settings["train"] == {**quick["train"], "max_steps": 2} and seeds == [0, 1]
    paper, seeds = scale_settings(suite, "paper", REGS)
    assert paper == {} and seeds == [0, 1]


# -- rendering ----------------------------------------------------------------------------------

MISSING = "pretrained weights 'alexnet' are missing: put alexnet-owt-7be5be79.pth into /w"


def _entry(values=None, status="ok", reason=None, notes=""):
    return {"status": status, "values": values or {}, "directions": {}, "reason": reason, "notes": notes}


def _record(run_id, *, mse=None, lpips=None, rand=None, leak=None, failed=False):
    metrics = {"transfer_error": _entry({"mse": mse}),
               "lpips_transfer": _entry({"lpips": lpips}) if lpips is not None else _entry(status="unavailable", reason=MISSING),
               "lpips_random": _entry({"lpips": rand}, notes="random backbone") if rand is not None
               else _entry(status="unavailable", reason="not computed"),
               "leakage": _entry({"class_from_content": leak, "chance_class": 0.1})}
    record = {"run_id": run_id, "status": "failed" if failed else "finished", "metrics": {} if failed else metrics}
    if failed:
        record["error"] = {"type": "RuntimeError", "message": "boom\nmore"}
    return record


def _fixture(tmp_path, scale="quick"):
    suite = write_suite(tmp_path)
    plan = plan_suite(suite, REGS, scale=scale, check_data=False)
    for tc in plan.cells.values():
        if tc.column == "cars" and not tc.skipped:
            tc.data_missing = "dataset 'cars3d': list.txt not found under /data/cars3d. Put it there."
    ids = {(c.method, c.seed): c.run_id for tc in plan.cells.values() for c in tc.runs if c.dataset == "synth3d"}
    records = [_record(ids["autoencoder", 0], mse=0.06, rand=0.11, leak=0.95),
               _record(ids["autoencoder", 1], mse=0.08, rand=0.13, leak=0.85),
               _record(ids["drnet", 0], mse=0.03, rand=0.09, leak=0.30), _record(ids["drnet", 1], failed=True),
               _record(ids["lord", 0], mse=0.012, lpips=0.12, leak=0.005),
               _record(ids["lord", 1], mse=0.010, lpips=0.10, leak=0.007)]
    return suite, plan, records


EXPECTED = """\
<!-- disentbench paper table: tiny scale=quick -->
# tiny: Table 9 of Doe & Roe, A Paper, 2020

Table 9: Transfer error and leakage (published numbers typed in from `paper.txt`).

A small paper table for tests

Scale: **quick**; seeds 0, 1. Each cell: measured mean ± std over seeds (the paper's number) and, only where the cell is measured as the paper measured it (its settings, evaluator and data), Δ = (measured − published) / published. `n/a`: not measured, for the reason in its note; `failed`: a run of the cell failed, for the reason in its note; `—`: a row the paper reports that disentbench does not run. ↑/↓: higher/lower is better.

| method             | Synth: MSE ↓                    | Synth: LPIPS ↓                    | Cars3D y ← c ↓                          |
|--------------------|---------------------------------|-----------------------------------|-----------------------------------------|
| Autoencoder        | 0.0700 ± 0.0141 (0.05) [1][2]   | 0.120 ± 0.0141 (0.3) [1][2][3][4] | 0.900 ± 0.0707 (0.9) [1][2][5][6]       |
| DrNet              | failed (0.02) [7]               | failed (0.2) [7]                  | failed (< 0.01) [7]                     |
| LORD               | 0.0110 ± 0.00141 (0.01) [1][2]  | n/a (0.1) [8]                     | 0.00600 ± 0.00141 (< 0.01) [1][2][5][6] |
| Other et al.       | — (0.03) [9]                    | — (—) [9]                         | — (0.5) [9]                             |
| Chance             | 0.0110 ± 0.00141 (—) [1][2][10] | n/a (—) [8]                       | 0.100 ± 0 (< 0.01) [1][2][5][6]         |
| Kendall τ vs paper | 1.00 (2 rows), agrees           | n/a (1 measured row)              | n/a (stand-in data)                     |

Reference points of the measured runs (chance: 1 / number of labels; majority: share of the most frequent label scored):

- Cars3D y ← c: chance 0.100

Ranking: the methods rank exactly as in the paper (τ = 1) in 1 of 1 column(s) with at least two measured, ranked rows on the paper's data.

### Notes

1. settings differ: quick scale (tiny settings); 2 seed(s). Not the paper's settings, so not comparable in absolute value: no Δ against the published numbers (Kendall τ still compares the ranking)
2. protocol differs: all methods share one architecture
3. evaluator differs: lpips_transfer: pretrained weights 'alexnet' are missing: put alexnet-owt-7be5be79.pth into /w (for Autoencoder; one evaluator serves the whole column); measured instead with lpips_random (LPIPS with a seeded random AlexNet backbone and the lpips package's real linear heads, on the pairs of lpips_transfer: its offline stand-in when the ImageNet AlexNet weights are missing (compare methods with each other, not with published LPIPS)); no Δ against the published numbers (Kendall τ still compares the ranking)
4. lpips_random: random backbone
5. data differs: measured on 'synth3d', a stand-in for 'cars3d', which is not available here (dataset 'cars3d': list.txt not found under /data/cars3d. Put it there.); not comparable with the published value: no Δ against the published numbers, and left out of Kendall τ
6. protocol differs (Cars3D y ← c): a column note
7. run failed: RuntimeError: boom (seed 1); 1 of 2 planned seeds failed, so no value is shown
8. lpips_transfer: pretrained weights 'alexnet' are missing: put alexnet-owt-7be5be79.pth into /w (for Autoencoder; one evaluator serves the whole column); fallback lpips_random: not computed
9. not run in disentbench: not in disentbench
10. no published number: not reported in the paper
"""


def test_render_matches_expected_text(tmp_path):
    suite, plan, records = _fixture(tmp_path)
    out = pt.render(suite, plan, records, pt.MetricInfo.from_registries(REGS))
    assert out == EXPECTED


def test_render_is_pure_and_order_independent(tmp_path):
    suite, plan, records = _fixture(tmp_path)
    info = pt.MetricInfo.from_registries(REGS)
    assert pt.render(suite, plan, list(reversed(records)), info) == pt.render(suite, plan, records, info)


def test_without_records_every_cell_says_how_to_get_it(tmp_path):
    suite, plan, _ = _fixture(tmp_path)
    out = pt.render(suite, plan, [], pt.MetricInfo.from_registries(REGS))
    assert "not run yet: `disentbench run --suite tiny --scale quick`" in out
    assert "data not available here: dataset 'cars3d'" in out and "add --stand-ins" in out
    assert "cannot be compared" in out


def _cell(out, row, column):
    lines = [line for line in out.splitlines() if line.startswith(f"| {row} ")]
    header = next(line for line in out.splitlines() if line.startswith("| method"))
    names = [h.strip() for h in header.split("|")[1:-1]]
    return lines[0].split("|")[1:-1][names.index(column)].strip()


def test_no_delta_at_a_scale_other_than_the_papers(tmp_path):
    suite, plan, records = _fixture(tmp_path)  # quick scale
    out = pt.render(suite, plan, records, pt.MetricInfo.from_registries(REGS))
    assert "Δ +" not in out and "Δ -" not in out and "within bound" not in out
    assert _cell(out, "LORD", "Synth: MSE ↓").startswith("0.0110 ± 0.00141 (0.01) [1]")
    assert "quick scale (tiny settings); 2 seed(s). Not the paper's settings, so not comparable in absolute value: " \
           "no Δ against the published numbers (Kendall τ still compares the ranking)" in out
    assert "1.00 (2 rows), agrees" in out  # the ranking is still compared


def test_at_the_papers_scale_delta_only_where_evaluator_and_data_are_the_papers(tmp_path):
    suite, plan, records = _fixture(tmp_path, "paper")
    out = pt.render(suite, plan, records, pt.MetricInfo.from_registries(REGS))
    assert _cell(out, "LORD", "Synth: MSE ↓").startswith("0.0110 ± 0.00141 (0.01) Δ +10%")
    assert _cell(out, "Autoencoder", "Synth: MSE ↓").startswith("0.0700 ± 0.0141 (0.05) Δ +40%")
    # the LPIPS column is measured with the random-backbone stand-in evaluator: no Δ, τ stays
    lpips = _cell(out, "Autoencoder", "Synth: LPIPS ↓")
    assert lpips.startswith("0.120 ± 0.0141 (0.3) [") and "Δ" not in lpips
    assert "measured instead with lpips_random" in out and "1.00 (2 rows), agrees" in out
    # stand-in data: no Δ (and, as before, no τ); a bound the value meets is no comparison either
    assert "Δ" not in _cell(out, "DrNet", "Cars3D y ← c ↓") and "within bound" not in out
    assert "not comparable with the published value: no Δ against the published numbers, and left out of " \
           "Kendall τ" in out


def test_gaps_list_every_measured_cell_with_a_number(tmp_path):
    suite, plan, records = _fixture(tmp_path, "paper")
    gaps = pt.gaps(suite, plan, records, pt.MetricInfo.from_registries(REGS))
    lord = [g for g in gaps if g["row"] == "LORD" and g["column"] == "Synth: MSE"][0]
    assert lord["relative"] == pytest.approx(0.1) and lord["published"] == "0.01" and not lord["not_comparable"]
    assert all(g["published"] != "—" for g in gaps)
    ae = [g for g in gaps if g["row"] == "Autoencoder" and g["column"] == "Synth: LPIPS"][0]
    assert ae["relative"] is None and "stand-in evaluator lpips_random" in ae["not_comparable"]
    (tmp_path / "q").mkdir()
    quick = pt.gaps(*_fixture(tmp_path / "q"), pt.MetricInfo.from_registries(REGS))
    assert quick and all(g["relative"] is None and "quick scale" in g["not_comparable"] for g in quick)


def test_paper_pages_show_images_seen_and_footnote_an_unequal_budget(tmp_path):
    suite, plan, records = _fixture(tmp_path, "paper")
    for r in records:
        if r["status"] == "finished":
            r["timings"] = {"images_seen": 19200 if "/lord/" in r["run_id"] else 6144}
    out = pt.render(suite, plan, records, pt.MetricInfo.from_registries(REGS))
    assert _cell(out, "Autoencoder", "images seen") == "6144" and _cell(out, "Other et al.", "images seen") == "—"
    lord = _cell(out, "LORD", "images seen")
    assert lord.startswith("19200 [") and "unequal training budget: 19200 images seen, against the table's " \
        "median of 6144" in out
    (tmp_path / "q").mkdir()
    assert "images seen" not in pt.render(*_fixture(tmp_path / "q", "paper"), pt.MetricInfo.from_registries(REGS))


def test_kendall_tau_and_relative_difference():
    assert pt.kendall_tau([1, 2, 3], [10, 20, 30]) == pytest.approx(1.0)
    assert pt.kendall_tau([3, 2, 1], [10, 20, 30]) == pytest.approx(-1.0)
    assert pt.kendall_tau([1.0], [2.0]) is None
    assert pt.kendall_tau([1, 1], [2, 3]) is None  # undefined with all measured values tied
    assert pt.relative_difference(0.12, parse_published(0.1, "x")) == "Δ +20%"
    assert pt.relative_difference(0.005, parse_published("< 0.01", "x")) == "within bound"
    assert pt.relative_difference(0.02, parse_published("< 0.01", "x")) == "Δ +100%"
    assert pt.relative_difference(0.5, parse_published("—", "x")) == ""


def test_index_links_rendered_pages(tmp_path):
    suites = [REGS.suites.get(n).load() for n in ("lord-table1", "lord-table2", "quick")]
    (tmp_path / "lord-table1.md").write_text(pt.MARKER.format(name="lord-table1", scale="quick") + "\n# x\n")
    out = pt.render_index(suites, tmp_path)
    assert out.startswith(pt.INDEX_TITLE)
    rows = {line.split("|")[1].strip(): line for line in out.splitlines() if line.startswith("| ")}
    assert "[lord-table1](lord-table1.md)" in rows and rows["[lord-table1](lord-table1.md)"].rstrip(" |").endswith("quick")
    assert "not rendered yet" in rows["`lord-table2`"]
    assert not any("quick" in key for key in rows)  # the plain quick suite has no paper table


# -- training reuse -----------------------------------------------------------------------------

def test_runs_differing_only_in_metrics_share_their_training(tmp_path, tiny, monkeypatch):
    from disentbench.runner import execute, plan

    sets = {k: tiny[k] for k in ("synth3d", "lord", "eval")}
    first = plan(REGS, methods=["lord"], datasets=["synth3d"], metrics=["reconstruction"], overrides=sets,
                 out=tmp_path, progress=False)[0]
    second = plan(REGS, methods=["lord"], datasets=["synth3d"], metrics=["transfer_error"], overrides=sets,
                  out=tmp_path, progress=False)[0]
    assert first.run_id != second.run_id
    record = execute(first, REGS)
    assert record["status"] == "finished"
    from disentbench_plugins.methods.lord import LORD

    monkeypatch.setattr(LORD, "fit", lambda *a, **k: (_ for _ in ()).throw(AssertionError("trained again")))
    again = execute(second, REGS)
    assert again["status"] == "finished", again.get("error")
    assert again["timings"]["trained_in"] == first.run_id and "transfer_error" in again["metrics"]
    assert again["timings"]["steps"] == record["timings"]["steps"]
    changed = plan(REGS, methods=["lord"], datasets=["synth3d"], metrics=["transfer_error"],
                   overrides={**sets, "lord": {**sets["lord"], "epochs": 1}}, out=tmp_path, progress=False)[0]
    assert execute(changed, REGS)["status"] == "failed"  # other training settings: trains (here: refuses)


# -- the CLI ----------------------------------------------------------------------------------

def test_cli_runs_a_plugin_suite_and_renders_its_table(tmp_path, monkeypatch, capsys):
    from disentbench.cli import main

    monkeypatch.setenv("DISENTBENCH_PLUGINS", "testplugins,suiteplugin")
    monkeypatch.setenv("DISENTBENCH_OFFLINE", "1")
    assert main(["list", "suites"]) == 0
    listing = capsys.readouterr().out
    assert "tiny-paper" in listing and "suiteplugin" in listing and "lord-table1" in listing
    args = ["--suite", "tiny-paper", "--scale", "quick", "--data-dir", str(tmp_path / "data")]
    rc = main(["run", *args, "--device", "cpu", "--out", str(tmp_path / "runs"), "--leaderboard",
               str(tmp_path / "lb"), "--quiet"])
    out = capsys.readouterr()
    assert rc == 1  # the failing method failed; everything else was still run and rendered
    assert "celeba" in out.err and "its columns are n/a" in out.err
    page = (tmp_path / "lb" / "tiny-paper.md").read_text()
    assert page.startswith(pt.MARKER.format(name="tiny-paper", scale="quick"))
    ae = [line for line in page.splitlines() if line.startswith("| Tiny AE")][0]
    assert "(0.02) [" in ae and "(0.5) [" in ae and "n/a (0.1)" in ae and "Δ" not in ae  # quick scale: no Δ
    assert ae.rstrip(" |").endswith("| 16")  # images seen: the scale's 2 steps of the tiny AE's batch of 8
    assert "run failed: RuntimeError: this method always fails" in page
    assert "data not available here: dataset 'celeba'" in page and "not run in disentbench: not implemented here" in page
    index = (tmp_path / "lb" / "README.md").read_text()
    assert "[tiny-paper](tiny-paper.md)" in index and "`lord-table1`" in index
    # the leaderboard command re-renders the same page from the runs
    (tmp_path / "lb" / "tiny-paper.md").unlink()
    assert main(["leaderboard", *args, "--runs", str(tmp_path / "runs"), "--out", str(tmp_path / "lb")]) == 0
    assert (tmp_path / "lb" / "tiny-paper.md").read_text() == page
    # a plain leaderboard into the same directory adds the run tables to README.md and keeps the index
    assert main(["leaderboard", "--runs", str(tmp_path / "runs"), "--out", str(tmp_path / "lb")]) == 0
    readme = (tmp_path / "lb" / "README.md").read_text()
    assert readme.startswith("<!-- disentbench:runs -->\n# disentbench leaderboard")
    assert readme.index("## synth3d") < readme.index(pt.INDEX_TITLE) and "[tiny-paper](tiny-paper.md)" in readme
    # and rendering the index again keeps the run tables
    assert main(["leaderboard", *args, "--runs", str(tmp_path / "runs"), "--out", str(tmp_path / "lb")]) == 0
    assert (tmp_path / "lb" / "README.md").read_text() == readme


def test_cli_errors_for_paper_suites(tmp_path, capsys):
    from disentbench.cli import main

    assert main(["run", "--suite", "lord-table1", "--scale", "huge", "--out", str(tmp_path / "r")]) == 2
    assert "defines no scale 'huge'" in capsys.readouterr().err
    assert main(["run", "--suite", "lord-table1", "--metrics", "leakage", "--out", str(tmp_path / "r")]) == 2
    assert "its metrics are its columns" in capsys.readouterr().err
    # a plain sweep's --scale is a plain suite's settings (`--scale cpu`): not a paper table, not beside --suite
    assert main(["run", "--methods", "lord", "--datasets", "synth3d", "--scale", "lord-table1", "--out", str(tmp_path / "r")]) == 2
    assert "is a paper table" in capsys.readouterr().err
    assert main(["run", "--suite", "quick", "--scale", "cpu", "--out", str(tmp_path / "r")]) == 2
    assert "not both" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_a_run_whose_data_is_missing_is_not_available_not_failed(tmp_path):
    """A cell whose runs measured nothing because its data is not here reads n/a with the reason;
    a method that crashed, diverged or collapsed reads failed."""
    suite, plan, records = _fixture(tmp_path)
    for r in records:
        if r["status"] == "failed":
            r["error"] = {"type": "DataMissing", "message": "dataset 'synth3d': files are missing"}
    drnet_0 = next(r for r in records if r["run_id"].split("/")[1] == "drnet" and r["status"] == "finished")
    drnet_0.update(status="failed", metrics={}, error={"type": "DataMissing", "message": "dataset 'synth3d': gone"})
    out = pt.render(suite, plan, records, pt.MetricInfo.from_registries(REGS))
    row = next(line for line in out.splitlines() if line.startswith("| DrNet"))
    assert "failed" not in row and "n/a" in row
    assert "not available here: dataset 'synth3d'" in out
