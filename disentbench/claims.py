"""Claims: what a suite says its runs must show, checked against the runs and shown beside them.

A plain suite may state claims (``benchmarks/cpu.toml``), each a bound on one measured key of one
method's runs on one dataset, the bound a number or another key of the same runs (a chance level,
a reference output's score) scaled and shifted::

    [[claims]]
    method = "lord"
    dataset = "cars3d"
    text = "the transfer follows the content image"
    value = "swap.content_accuracy"
    min = 0.4                                              # a number, or
    # min = { key = "swap.recon_content_accuracy", times = 0.85 }   # times × key + plus

A claim holds when the mean over the runs' seeds meets every bound. It does not hold when it is
measured and misses a bound, and it cannot be judged (said why) when the method's runs failed, were
not run, or did not measure a key: a claim is never met by a run that learned nothing.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterable

from disentbench.config import ConfigError
from disentbench.numbers import fmt

CLAIM_KEYS = {"method", "dataset", "text", "value", "min", "max"}
BOUND_KEYS = {"key", "times", "plus"}


@dataclass(frozen=True)
class Bound:
    number: float | None = None  # a fixed bound, or
    key: str = ""  # "metric.key" of the same runs, as times × key + plus
    times: float = 1.0
    plus: float = 0.0

    def of(self, values: dict[str, float]) -> float | None:
        if self.number is not None:
            return self.number
        v = values.get(self.key)
        return None if v is None else self.times * v + self.plus

    def describe(self, values: dict[str, float]) -> str:
        if self.number is not None:
            return f"{self.number:g}"
        v = values.get(self.key)
        text = (f"{self.times:g} × " if self.times != 1 else "") + f"`{self.key}`"
        text += f" + {self.plus:g}" if self.plus > 0 else (f" − {-self.plus:g}" if self.plus < 0 else "")
        return text + (f" = {fmt(self.of(values))}" if v is not None else "")

    def keys(self) -> list[str]:
        return [self.key] if self.key else []


@dataclass(frozen=True)
class Claim:
    method: str
    dataset: str
    text: str
    value: str  # "metric.key"
    min: Bound | None = None
    max: Bound | None = None

    def keys(self) -> list[str]:
        return [self.value] + [k for b in (self.min, self.max) if b for k in b.keys()]


@dataclass(frozen=True)
class Verdict:
    claim: Claim
    holds: bool | None  # None: cannot be judged (``reason``)
    measured: float | None
    bound: str
    reason: str = ""
    seeds: int = 0


def _key(value: Any, where: str) -> str:
    if not isinstance(value, str) or value.count(".") < 1 or not all(value.split(".")):
        raise ConfigError(f"{where}: {value!r} is not a metric key 'METRIC.KEY'")
    return value


def _bound(value: Any, where: str) -> Bound:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return Bound(number=float(value))
    if isinstance(value, dict):
        unknown = set(value) - BOUND_KEYS
        if unknown or "key" not in value:
            raise ConfigError(f"{where}: a bound is a number or {{ key = \"METRIC.KEY\", times = 1.0, plus = 0.0 }}"
                              + (f"; unknown {sorted(unknown)}" if unknown else ""))
        for k in ("times", "plus"):
            if k in value and (isinstance(value[k], bool) or not isinstance(value[k], (int, float))):
                raise ConfigError(f"{where}: {k} must be a number")
        return Bound(key=_key(value["key"], where), times=float(value.get("times", 1.0)), plus=float(value.get("plus", 0.0)))
    raise ConfigError(f"{where}: a bound is a number or a table with a key")


def parse(data: Any, where: str) -> list[Claim]:
    """The ``[[claims]]`` of a suite file, checked for structure."""
    if not isinstance(data, list) or not all(isinstance(c, dict) for c in data):
        raise ConfigError(f"{where}: claims must be [[claims]] tables")
    out = []
    for k, c in enumerate(data):
        w = f"{where}: claims[{k}]"
        unknown = set(c) - CLAIM_KEYS
        if unknown:
            raise ConfigError(f"{w}: unknown key(s) {sorted(unknown)}; a claim has {sorted(CLAIM_KEYS)}")
        for key in ("method", "dataset", "text", "value"):
            if not isinstance(c.get(key), str) or not c[key]:
                raise ConfigError(f"{w}: needs {key!r} (a string)")
        if "min" not in c and "max" not in c:
            raise ConfigError(f"{w}: needs a bound, 'min' or 'max'")
        out.append(Claim(c["method"], c["dataset"], c["text"], _key(c["value"], w),
                         _bound(c["min"], f"{w}.min") if "min" in c else None,
                         _bound(c["max"], f"{w}.max") if "max" in c else None))
    return out


def _values(records: list[dict[str, Any]], keys: list[str]) -> tuple[dict[str, float], str]:
    """Mean over the records of each key measured by every one of them; the first reason a key is
    missing."""
    out: dict[str, float] = {}
    for key in dict.fromkeys(keys):
        metric, name = key.split(".", 1)
        vals = []
        for r in records:
            entry = (r.get("metrics") or {}).get(metric) or {}
            v = (entry.get("values") or {}).get(name) if entry.get("status") == "ok" else None
            if v is None or not math.isfinite(float(v)):
                reason = entry.get("reason") or ("not computed" if entry else f"metric {metric!r} not run")
                return out, f"`{key}` not measured: {reason}"
            vals.append(float(v))
        out[key] = sum(vals) / len(vals)
    return out, ""


def judge(claims: Iterable[Claim], records: Iterable[dict[str, Any]]) -> list[Verdict]:
    """Each claim against the finished and failed ``records`` of its method and dataset."""
    records = list(records)
    verdicts = []
    for claim in claims:
        mine = [r for r in records if r.get("method") == claim.method and r.get("dataset") == claim.dataset]
        failed = [r for r in mine if r.get("status") == "failed"]
        done = [r for r in mine if r.get("status") == "finished"]
        bounds = [(op, b) for op, b in (("≥", claim.min), ("≤", claim.max)) if b is not None]
        if failed:
            err = (failed[0].get("error") or {})
            verdicts.append(Verdict(claim, None, None, "", f"the run failed ({err.get('type', 'error')})", len(mine)))
            continue
        if not done:
            verdicts.append(Verdict(claim, None, None, "", "not run", 0))
            continue
        configs = {r.get("config_hash") for r in done}
        if len(configs) > 1:  # a claim is about one configuration's seeds, never a mean across settings
            verdicts.append(Verdict(claim, None, None, "", f"{len(configs)} configurations of {claim.method} here, "
                                    "a claim is about one", len(done)))
            continue
        values, missing = _values(done, claim.keys())
        text = "; ".join(f"{op} {b.describe(values)}" for op, b in bounds)
        if missing:
            verdicts.append(Verdict(claim, None, values.get(claim.value), text, missing, len(done)))
            continue
        v = values[claim.value]
        ok = all((v >= b.of(values)) if op == "≥" else (v <= b.of(values)) for op, b in bounds)
        verdicts.append(Verdict(claim, ok, v, text, "", len(done)))
    return verdicts


def render(verdicts: list[Verdict]) -> list[str]:
    """Markdown lines: a table of the claims, what was measured, the bound and whether it holds."""
    from tabulate import tabulate

    if not verdicts:
        return []
    rows = []
    for v in verdicts:
        measured = "" if v.measured is None else fmt(v.measured)
        holds = "yes" if v.holds else ("**no**" if v.holds is False else f"cannot tell: {v.reason}")
        rows.append([v.claim.text, v.claim.method, v.claim.dataset, f"`{v.claim.value}`", measured, v.bound, holds])
    held = sum(1 for v in verdicts if v.holds)
    return ["## Claims", "",
            f"What the suite says these runs must show, each checked on the mean over the method's seeds: "
            f"{held} of {len(verdicts)} hold. A claim on a failed run cannot hold.", "",
            tabulate(rows, headers=["claim", "method", "dataset", "measured key", "measured", "bound", "holds"],
                     tablefmt="github", disable_numparse=True), ""]
