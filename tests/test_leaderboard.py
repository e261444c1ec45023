from __future__ import annotations

from disentbench.leaderboard import render


def _record(method, seed, mse, acc=None, supervision="class-supervised", status="finished", unavailable=None):
    metrics = {"transfer_error": {"status": "ok", "values": {"mse": mse}, "directions": {"mse": "min"},
                                  "reason": None, "notes": ""}}
    if acc is not None:
        metrics["leakage"] = {"status": "ok", "values": {"class_from_content": acc, "chance_class": 0.1},
                              "directions": {"class_from_content": "min", "chance_class": "info"},
                              "reason": None, "notes": ""}
    if unavailable:
        metrics["lpips_transfer"] = {"status": "unavailable", "values": {}, "directions": {"lpips": "min"},
                                     "reason": unavailable, "notes": ""}
    return {"schema_version": 1, "run_id": f"synth3d/{method}/seed{seed}-abc", "status": status,
            "method": method, "dataset": "synth3d", "seed": seed, "supervision": supervision,
            "config_hash": "abcdef123456", "metrics": metrics if status == "finished" else {},
            "timings": {"train_seconds": 10.0 + seed, "images_per_second": 100.0},
            "error": None if status == "finished" else {"type": "RuntimeError", "message": "boom\nmore"}}


RECORDS = [
    _record("lord", 0, 0.010, 0.20, unavailable="weights 'alexnet' missing: put the file at /w/alexnet.pth"),
    _record("lord", 1, 0.020, 0.10, unavailable="weights 'alexnet' missing: put the file at /w/alexnet.pth"),
    _record("autoencoder", 0, 0.050, 0.90, supervision="unsupervised"),
    _record("drnet", 0, 0.0, status="failed"),
]

EXPECTED = """\
# disentbench leaderboard

Mean ± std over seeds (std shown when there is more than one seed). ↑: higher is better, ↓: lower is better; the best value of each column is in **bold**. `n/a [k]`: the metric could not be computed, for the reason in note k. `failed [k]`: a run of that row failed (its loss diverged, its generator collapsed, or it crashed), for the reason in note k; no value of that row is shown. Every number links back to a run directory through its record (`record.json`: config, seed, versions, metrics).

## synth3d

| method      | supervision      | seeds   | leakage.class_from_content ↓   | transfer_error.mse ↓   | train s   | img/s   | transfer grid            |
|-------------|------------------|---------|--------------------------------|------------------------|-----------|---------|--------------------------|
| autoencoder | unsupervised     | 1       | 0.900                          | 0.0500                 | 10        | 100     |                          |
| drnet       | class-supervised | 1       | failed [1]                     | failed [1]             |           |         |                          |
| lord        | class-supervised | 2       | **0.150 ± 0.0707**             | **0.0150 ± 0.00707**   | 10.5      | 100     | [grid](grids/lord-0.png) |

- leakage.class_from_content: chance 0.100
- not measured: lpips_transfer: weights 'alexnet' missing: put the file at /w/alexnet.pth

### Notes

1. drnet failed on 1 of 1 seed(s), so no value of the row is shown: seed 0: RuntimeError: boom

### Failed runs

- `synth3d/drnet/seed0-abc`: RuntimeError: boom
"""


def test_render_matches_expected_text():
    out = render(RECORDS, grids={("synth3d", "lord", "abcdef123456"): "grids/lord-0.png"})
    assert out == EXPECTED


def test_render_is_pure_and_order_independent():
    assert render(list(reversed(RECORDS)), grids={("synth3d", "lord", "abcdef123456"): "grids/lord-0.png"}) == EXPECTED


def test_two_configs_of_one_method_are_two_rows():
    other = dict(_record("lord", 0, 0.5), config_hash="999999999999")
    out = render([_record("lord", 0, 0.1), other])
    assert "lord (cfg abcdef)" in out and "lord (cfg 999999)" in out


def test_higher_is_better_columns_bold_the_maximum():
    recs = []
    for method, ssim in (("a", 0.5), ("b", 0.9)):
        r = _record(method, 0, 0.1)
        r["metrics"]["transfer_error"]["values"]["ssim"] = ssim
        r["metrics"]["transfer_error"]["directions"]["ssim"] = "max"
        recs.append(r)
    out = render(recs)
    assert "**0.900**" in out and "**0.500**" not in out


def test_no_records():
    assert "No finished runs yet." in render([])


def test_rows_of_several_configs_name_the_options_that_differ():
    """An ablation (e.g. robust's variant) shows which configuration each row is."""

    def record(variant: str, config_hash: str, mse: float) -> dict:
        return {"status": "finished", "method": "robust", "dataset": "synth3d", "seed": 0,
                "supervision": "video-pairs", "config_hash": config_hash,
                "config": {"method": {"name": "robust", "variant": variant, "epsilon": 0.125}},
                "metrics": {"transfer_error": {"status": "ok", "values": {"mse": mse}, "directions": {"mse": "min"},
                                               "reason": None, "notes": ""}},
                "timings": {}}

    out = render([record("adaptive", "aaaaaa111111", 0.1), record("adversarial", "bbbbbb222222", 0.2)])
    assert "robust (cfg aaaaaa: variant=adaptive)" in out and "robust (cfg bbbbbb: variant=adversarial)" in out
    assert "epsilon" not in out  # only what tells the rows apart


def test_readme_sections_are_replaced_independently(tmp_path):
    from disentbench.leaderboard import write_section

    page = tmp_path / "README.md"
    page.write_text("Written by hand.\n")
    write_section(page, "paper-tables", "## Paper tables\n\nindex v1\n")
    write_section(page, "runs", "# runs v1\n")
    write_section(page, "paper-tables", "## Paper tables\n\nindex v2\n")
    text = page.read_text()
    assert text == ("Written by hand.\n\n<!-- disentbench:runs -->\n# runs v1\n<!-- /disentbench:runs -->\n\n"
                    "<!-- disentbench:paper-tables -->\n## Paper tables\n\nindex v2\n<!-- /disentbench:paper-tables -->\n")
    write_section(page, "runs", "# runs v2\n")
    assert "# runs v2" in page.read_text() and "runs v1" not in page.read_text() and "index v2" in page.read_text()


def test_a_metric_some_rows_lack_stays_a_column_with_numbered_reasons():
    ok = _record("autoencoder", 0, 0.05)
    ok["metrics"]["lpips_transfer"] = {"status": "ok", "values": {"lpips": 0.3}, "directions": {"lpips": "min"},
                                       "reason": None, "notes": ""}
    out = render([ok, _record("lord", 0, 0.01, unavailable="weights 'alexnet' missing")])
    lord = next(line for line in out.splitlines() if line.startswith("| lord"))
    assert "lpips_transfer.lpips ↓" in out and "n/a [1]" in lord
    assert "1. lpips_transfer: weights 'alexnet' missing" in out and "not measured" not in out


def test_run_tables_paper_pages_and_claims_write_numbers_with_one_formatter():
    """One number format everywhere (issue 14): the run table, the paper page and the claims all use
    disentbench.numbers.fmt, so the same value reads the same on every page."""
    from disentbench import claims, leaderboard, numbers, paper_tables, results

    assert leaderboard.fmt is numbers.fmt and paper_tables.fmt is numbers.fmt
    assert claims.fmt is numbers.fmt and results.fmt is numbers.fmt
    cases = {0.0: "0", 0.005312: "0.00531", 0.0198: "0.0198", 0.229: "0.229", 0.5: "0.500", 4.75: "4.75",
             71.25: "71.2", 335.44: "335.4", 594624.0: "594624", 12: "12", float("nan"): "n/a", None: "n/a"}
    assert {x: numbers.fmt(x) for x in cases} == cases
