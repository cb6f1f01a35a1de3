"""Scenario files: the schema, loading, validation and TOML output.

A scenario is a TOML file. Every parameter has its value in the built-in
``default.toml`` (parameters live in scenario files, not in code); this module
holds only the schema: each key's type, allowed range and one line of help. A
user's file overrides any subset of keys of a base scenario (``default`` unless
the file says ``base = "NAME"`` at the top); ``[[segments]]`` in a file replaces
the whole segment list, and each segment takes its missing keys from
``[segment_defaults]``.

Errors are :class:`~tenure.errors.InputError` with a one-line message naming the
file and the key, e.g. ``my.toml: churn.trust: expected a number, got 'high'``.
"""

from __future__ import annotations

import copy
import math
import tomllib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from tenure.checks import read_text
from tenure.errors import InputError

#: The ``run.seed`` of every built-in market, and the seed of every fit without ``--seed``.
DEFAULT_SEED = 20261124
#: Modelling limits, each with its reason (docs/model.md, "Limits", lists them).
MAX_MARKET = 2**31
"""Market size: latent means are summed over customers in 2**-24 fixed point in 64 bits, so
2**31 customers with latent values up to 2**7 stay below 2**63."""
MAX_MAGNITUDE = 100.0
"""Largest absolute value of a quality, logit or rate parameter: a logit of 100 is already
certainty, and it keeps latent states within 2**7 for the fixed-point sums."""
MAX_MONEY_PER_CUSTOMER = 1e5
"""Currency per customer per period (margins, repair cost, every budget over the initial base):
revenue is summed in cents in 64 bits, 2**31 customers x 255 products x 1e5 x 100 < 2**63."""
MAX_SEGMENTS = 64
"""Segments: the kernel picks a segment's parameters in one pass per segment, so every step's
cost grows with their number; the segment index is stored in 8 bits."""
MAX_PERIODS = 10_000
"""Months simulated, and the oldest initial age: tenure and cohort are stored in 16 bits
(periods + max_initial_tenure < 2**15)."""

PROB = (0.0, 1.0)
NONNEG = (0.0, MAX_MAGNITUDE)
REAL = (-MAX_MAGNITUDE, MAX_MAGNITUDE)
MONEY = (0.0, MAX_MONEY_PER_CUSTOMER)
BUDGET = (0.0, math.inf)  # bounded per customer in validate()


@dataclass(frozen=True)
class Field:
    """One scenario key: its kind, allowed range and help text.

    ``kind`` is ``"int"``, ``"float"``, ``"str"``, ``"choice"``, ``"floats"``
    (a list of ``length`` numbers) or ``"strs"`` (a list of strings).
    """

    kind: str
    help: str
    bounds: tuple[float, float] = REAL
    choices: tuple[str, ...] = ()
    length: int | None = None
    open_low: bool = False


def _f(help: str, bounds: tuple[float, float] = REAL, open_low: bool = False) -> Field:
    return Field("float", help, bounds, open_low=open_low)


def _i(help: str, bounds: tuple[float, float] = (0, math.inf)) -> Field:
    return Field("int", help, bounds)


SEGMENT_SCHEMA: dict[str, Field] = {
    "name": Field("str", "segment name"),
    "share": _f("share of new and initial customers in this segment (shares sum to 1)", PROB),
    "churn_alpha": _f("alpha of the Beta distribution of base monthly churn (Fader & Hardie 2007)", NONNEG, True),
    "churn_beta": _f("beta of the Beta distribution of base monthly churn", NONNEG, True),
    "churn_heterogeneity": Field(
        "choice", "'beta': base churn drawn per customer from Beta(alpha, beta); 'none': alpha/(alpha+beta) for all",
        choices=("beta", "none"),
    ),
    "expectation": _f("expected quality; experience above it delights, below it disappoints"),
    "price_burden": _f("price felt, on the quality scale; perceived value = quality - price burden"),
    "value_weight": _f("logit reduction of churn per unit of perceived value (price-driven customers weigh it more)"),
    "switching_barrier": _f("logit reduction of churn from contracts and barriers"),
    "margin_per_product": _f("margin per product held per period (currency)", MONEY),
    "incident_probability": _f("probability of a negative incident per customer per period", PROB),
    "initial_trust": _f("mean starting trust (0-1)", PROB),
    "initial_enthusiasm": _f("mean starting enthusiasm (0-1)", PROB),
    "initial_satisfaction": _f("mean starting latent satisfaction"),
    "initial_trust_sd": _f("sd of starting trust around its mean (before clipping to 0-1)", NONNEG),
    "initial_enthusiasm_sd": _f("sd of starting enthusiasm around its mean (before clipping to 0-1)", NONNEG),
    "initial_satisfaction_sd": _f("sd of starting latent satisfaction around its mean", NONNEG),
    "initial_products": _i("products held at acquisition", (1, 255)),
    "initial_stage_mix": Field(
        "floats", "shares of the initial base in stages new, satisfied, devoted, partner (sum to 1)", PROB, length=4
    ),
}

SHOCK_SCHEMA: dict[str, Field] = {
    "start": _i("first period of the shock", (0, MAX_PERIODS)),
    "end": _i("last period of the shock (inclusive)", (0, MAX_PERIODS)),
    "incident_multiplier": _f("incident probabilities are multiplied by this during the shock", NONNEG),
    "competitor_pull": _f("extra logit shift of churn during the shock"),
    "quality": _f("change of product quality during the shock"),
}

SCHEMA: dict[str, dict[str, Field]] = {
    "meta": {
        "name": Field("str", "scenario name"),
        "story": Field("str", "what the scenario is about"),
        "sources": Field("strs", "sources behind its numbers"),
    },
    "run": {
        "customers": _i("initial customer base", (1, MAX_MARKET)),
        "periods": _i("months simulated", (1, MAX_PERIODS)),
        "seed": _i("seed fixing every random draw", (0, 2**63 - 1)),
        "initial_tenure": Field(
            "choice", "'steady': stationary ages; 'new': every initial customer at age 0", choices=("steady", "new")
        ),
        "max_initial_tenure": _i("oldest age (months) in a steady initial base", (0, MAX_PERIODS)),
    },
    "market": {
        "size": _i("addressable market: customers plus prospects", (1, MAX_MARKET)),
        "catalogue_size": _i("products a customer can hold at most", (1, 255)),
        "monthly_discount_rate": _f("discount rate per month", (0.0, 1.0)),
        "competitor_pull": _f("logit shift of every customer's churn hazard"),
    },
    "acquisition": {
        "budget": _f("paid acquisition spend per period (currency)", BUDGET),
        "ceiling": _f("c: share of prospects a saturated campaign wins per period", PROB),
        "k": _f("response per unit of spend per prospect: a(A) = c (1 - exp(-k A))", NONNEG),
        "organic_rate": _f("Bass innovation p: share of prospects joining unprompted per period", PROB),
        "referral_rate": _f("Bass imitation q carried by promoters", NONNEG),
        "detractor_reach": _f("prospects each detractor puts off per period", NONNEG),
        "referral_trust_bonus": _f("extra starting trust of referred customers", PROB),
        "referral_enthusiasm_bonus": _f("extra starting enthusiasm of referred customers", PROB),
    },
    "retention": {
        "service": _f("service-quality spend per period (currency)", BUDGET),
        "loyalty": _f("loyalty-programme spend per period (currency)", BUDGET),
        "engagement": _f("engagement-contact spend per period (currency)", BUDGET),
        "alarm": _f("alarm-system (feedback coverage) spend per period (currency)", BUDGET),
        "employee": _f("employee-engagement spend per period (currency)", BUDGET),
    },
    "levers": {
        "service_quality_max": _f("quality gain of saturated service spend", NONNEG),
        "service_k": _f("service response per currency per customer per period", NONNEG),
        "loyalty_enthusiasm_max": _f("enthusiasm contact of a saturated loyalty programme", PROB),
        "loyalty_barrier_max": _f("logit churn reduction of a saturated loyalty programme", NONNEG),
        "loyalty_k": _f("loyalty response per currency per customer per period", NONNEG),
        "engagement_enthusiasm_max": _f("enthusiasm contact of saturated engagement contacts", PROB),
        "engagement_k": _f("engagement response per currency per customer per period", NONNEG),
        "alarm_coverage_base": _f("share of incidents detected with no alarm spend", PROB),
        "alarm_coverage_max": _f("share of incidents detected with saturated alarm spend", PROB),
        "alarm_k": _f("alarm response per currency per customer per period", NONNEG),
        "repair_probability": _f("probability that a detected incident is repaired", PROB),
        "repair_cost": _f("cost per repaired incident (currency)", MONEY),
        "repair_restore": _f("share of an incident's damage that a repair undoes", PROB),
        "employee_engagement_base": _f("employee engagement with no spend (0-1)", PROB),
        "employee_engagement_max": _f("employee engagement with saturated spend (0-1)", PROB),
        "employee_k": _f("employee response per currency per customer per period", NONNEG),
        "employee_quality": _f("service quality per unit of employee engagement", NONNEG),
        "employee_enthusiasm": _f("customer enthusiasm contact per unit of employee engagement", PROB),
    },
    "experience": {
        "product_quality": _f("mean experienced quality of the product"),
        "service_quality": _f("service quality with no service spend"),
        "quality_noise": _f("sd of the monthly experience", NONNEG),
        "incident_severity": _f("drop in experienced quality from an incident", NONNEG),
    },
    "dynamics": {
        "satisfaction_rate": _f("share of the way satisfaction moves to experience minus expectation", PROB),
        "value_rate": _f("share of the way perceived value moves to quality minus price burden", PROB),
        "trust_gain": _f("trust gain per unit of positive disconfirmation, times (1 - trust)", PROB),
        "trust_loss_incident": _f("share of trust lost in an incident", PROB),
        "trust_loss_disappointment": _f("share of trust lost per unit of disappointment", PROB),
        "enthusiasm_gain": _f("enthusiasm gain per unit of delight or contact, times (1 - enthusiasm)", PROB),
        "enthusiasm_decay": _f("share of enthusiasm lost per period", PROB),
        "delight_margin": _f("experience above expectation by more than this delights", NONNEG),
        "stage_up_satisfaction": _f("satisfaction needed for a good month"),
        "stage_up_trust": Field(
            "floats", "trust needed for a good month in stages new, satisfied, devoted", PROB, length=3
        ),
        "stage_up_periods": _i("consecutive good months to move up a stage", (1, 1000)),
        "stage_down_disappointment": _f("a month this far below expectation moves a customer down", NONNEG),
    },
    "churn": {
        "satisfaction": _f("logit effect per unit of latent satisfaction"),
        "trust": _f("logit effect per unit of trust, around reference_trust"),
        "enthusiasm": _f("logit effect per unit of enthusiasm, around reference_enthusiasm"),
        "stage": Field("floats", "logit effects of stages new, satisfied, devoted, partner", length=4),
        "incident": _f("logit kick of an unrepaired incident", NONNEG),
        "trust_protection": _f("share of the incident kick that full trust absorbs", PROB),
        "reference_trust": _f("trust at which the base churn applies", PROB),
        "reference_enthusiasm": _f("enthusiasm at which the base churn applies", PROB),
    },
    "cross_sell": {
        "intercept": _f("log monthly rate of adopting another product"),
        "trust": _f("log-rate effect per unit of trust"),
        "enthusiasm": _f("log-rate effect per unit of enthusiasm"),
        "trust_x_enthusiasm": _f("log-rate effect of trust times enthusiasm"),
        "products": _f("log-rate effect per product already held beyond the first"),
    },
    "survey": {
        "rate": _f("share of customers surveyed each period", PROB),
        "item_noise": _f("sd of 1-5 answers around the latent reading", NONNEG),
        "nps_noise": _f("sd of 0-10 answers around the latent recommendation", NONNEG),
        "nps_intercept": _f("latent recommendation at zero satisfaction, trust and enthusiasm"),
        "nps_satisfaction": _f("latent recommendation per unit of satisfaction"),
        "nps_trust": _f("latent recommendation per unit of trust"),
        "nps_enthusiasm": _f("latent recommendation per unit of enthusiasm"),
        "nps_latent_promoter": _f("latent recommendation (0-10) from which a customer spreads good word of mouth",
                                  (0.0, 10.0)),
        "nps_latent_detractor": _f("latent recommendation (0-10) below which a customer spreads bad word of mouth",
                                   (0.0, 10.0)),
        "trim_weights": Field("floats", "weights of the four TRI*M-style items", NONNEG, length=4),
    },
    "segment_defaults": SEGMENT_SCHEMA,
}

LIST_SECTIONS = {"segments": SEGMENT_SCHEMA, "shocks": SHOCK_SCHEMA}
TOP_KEYS = {"base"}


def builtin_names() -> list[str]:
    """Names of the scenarios shipped with tenure."""
    files = resources.files("tenure.scenarios")
    return sorted(p.name[:-5] for p in files.iterdir() if p.name.endswith(".toml"))


def _read_toml(text: str, where: str) -> dict[str, Any]:
    if not text.strip():
        raise InputError(f"{where}: file is empty")
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"{where}: not valid TOML: {exc}") from None


def _builtin_raw(name: str) -> dict[str, Any]:
    files = resources.files("tenure.scenarios")
    f = files / f"{name}.toml"
    if not f.is_file():
        raise InputError(f"unknown scenario {name!r}; built-in scenarios: {', '.join(builtin_names())}")
    return _read_toml(f.read_text(), f"scenario {name}")


@dataclass
class Scenario:
    """A validated scenario: every key present, every value checked.

    ``data`` is the nested dictionary (sections → keys → values); ``source`` says
    where it came from.
    """

    data: dict[str, Any]
    source: str = "default"

    @property
    def name(self) -> str:
        return str(self.data["meta"]["name"])

    def __getitem__(self, section: str) -> Any:
        return self.data[section]

    def with_overrides(self, overrides: dict[str, Any], where: str = "overrides") -> Scenario:
        """A new scenario with ``overrides`` (same nested shape) applied and validated."""
        merged = _merge(copy.deepcopy(self.data), overrides, where)
        return Scenario(validate(merged, where), self.source)

    def scaled(self, customers: int, where: str = "scaled market") -> Scenario:
        """The same market with ``customers`` initial customers: market size and budgets scale with it.

        Lever effects depend on spend per customer, acquisition on spend per prospect and
        word of mouth on promoters per market member, so the scaled market keeps its
        per-customer economics and behaves the same up to sampling noise. This is what
        ``-n/--customers`` means on every command and what ``tenure scenario scale`` writes.
        A count the schema refuses (below 1) is reported as ``run.customers``, prefixed by
        ``where``.

        Examples
        --------
        >>> sc = load_scenario("default").scaled(20_000)
        >>> sc["run"]["customers"], sc["market"]["size"]
        (20000, 400000)
        """
        f = customers / self.data["run"]["customers"]
        return self.with_overrides({
            "run": {"customers": customers},
            "market": {"size": max(round(self.data["market"]["size"] * f), customers)},
            "acquisition": {"budget": self.data["acquisition"]["budget"] * f},
            "retention": {k: v * f for k, v in self.data["retention"].items()},
        }, where)

    def to_toml(self) -> str:
        """The scenario as TOML text, every default filled in."""
        return dumps_toml(self.data)


def load_scenario(spec: str | Path | None = None, overrides: dict[str, Any] | None = None) -> Scenario:
    """Load a scenario from a built-in name or a TOML file and validate it.

    Parameters
    ----------
    spec
        ``None`` for the default market, a built-in name (see
        :func:`builtin_names`), or the path of a TOML file. A file may start with
        ``base = "NAME"`` to build on another built-in scenario.
    overrides
        Nested ``{section: {key: value}}`` applied last (the CLI's
        ``--customers``, ``--periods`` and ``--seed`` use this).
    """
    default = _builtin_raw("default")
    if spec is None or (isinstance(spec, str) and spec in builtin_names()):
        name = "default" if spec is None else str(spec)
        raw = _builtin_raw(name)
        merged = _merge(copy.deepcopy(default), raw, f"scenario {name}") if name != "default" else default
        where, source = f"scenario {name}", name
    else:
        path = Path(spec)
        if not path.exists() and path.suffix == "":
            raise InputError(f"unknown scenario {str(spec)!r}; built-in scenarios: {', '.join(builtin_names())}")
        where, source = str(path), str(path)
        raw = _read_toml(read_text(path, where, "scenario TOML"), where)
        base_name = raw.pop("base", "default")
        if not isinstance(base_name, str):
            raise InputError(f"{where}: base: expected a scenario name")
        base = _builtin_raw(base_name) if base_name != "default" else {}
        merged = _merge(copy.deepcopy(default), base, f"scenario {base_name}")
        merged = _merge(merged, raw, where)
    if overrides:
        merged = _merge(merged, overrides, where)
    return Scenario(validate(merged, where), source)


def _merge(base: dict[str, Any], over: dict[str, Any], where: str) -> dict[str, Any]:
    for section, value in over.items():
        if section in LIST_SECTIONS:
            if not isinstance(value, list):
                raise InputError(f"{where}: {section}: expected an array of tables ([[{section}]])")
            base[section] = copy.deepcopy(value)
        elif section in SCHEMA:
            if not isinstance(value, dict):
                raise InputError(f"{where}: {section}: expected a table ([{section}])")
            base.setdefault(section, {}).update(copy.deepcopy(value))
        elif section in TOP_KEYS:
            continue
        else:
            known = ", ".join([*SCHEMA, *LIST_SECTIONS])
            raise InputError(f"{where}: unknown section {section!r}; known sections: {known}")
    return base


def _check(value: Any, f: Field, key: str, where: str) -> Any:
    def bad(msg: str) -> InputError:
        return InputError(f"{where}: {key}: {msg}")

    if f.kind == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                value = int(value)
            else:
                raise bad(f"expected a whole number, got {value!r}")
    elif f.kind == "float":
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise bad(f"expected a number, got {value!r}")
        value = float(value)
        if not math.isfinite(value):
            raise bad(f"expected a finite number, got {value!r}")
    elif f.kind in ("str", "choice"):
        if not isinstance(value, str):
            raise bad(f"expected text, got {value!r}")
        if f.kind == "choice" and value not in f.choices:
            raise bad(f"expected one of {', '.join(map(repr, f.choices))}, got {value!r}")
        return value
    elif f.kind == "strs":
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise bad("expected a list of strings")
        return value
    elif f.kind == "floats":
        if not isinstance(value, list) or any(isinstance(v, bool) or not isinstance(v, int | float) for v in value):
            raise bad(f"expected a list of numbers, got {value!r}")
        if f.length is not None and len(value) != f.length:
            raise bad(f"expected {f.length} numbers, got {len(value)}")
        lo, hi = f.bounds
        for v in value:
            if not (lo <= v <= hi):
                raise bad(f"value {v} outside [{lo}, {hi}]")
        return [float(v) for v in value]
    lo, hi = f.bounds
    if value < lo or value > hi or (f.open_low and value <= lo):
        rng = f"({lo}, {hi}]" if f.open_low else f"[{lo}, {hi}]"
        what = "a probability" if f.bounds == PROB else "a value"
        raise bad(f"expected {what} in {rng}, got {value}")
    return value


def _validate_table(table: Any, schema: dict[str, Field], prefix: str, where: str, required: bool) -> dict[str, Any]:
    if not isinstance(table, dict):
        raise InputError(f"{where}: {prefix}: expected a table")
    out = {}
    for key, value in table.items():
        if key not in schema:
            close = [k for k in schema if k.split("_")[0] == key.split("_")[0]]
            hint = f"; did you mean {close[0]!r}?" if close else f"; known keys: {', '.join(schema)}"
            raise InputError(f"{where}: unknown key {prefix}.{key}{hint}")
        out[key] = _check(value, schema[key], f"{prefix}.{key}", where)
    if required:
        for key in schema:
            if key not in out:
                raise InputError(f"{where}: missing key {prefix}.{key}")
    return out


def validate(data: dict[str, Any], where: str = "scenario") -> dict[str, Any]:
    """Check every key of a merged scenario; return it with numbers normalised.

    Raises :class:`InputError` naming the key for unknown keys, wrong types and
    impossible values, and for cross-key rules (segment shares summing to 1,
    stage mixes summing to 1, shock periods in order, alarm coverage max ≥ base).
    """
    out: dict[str, Any] = {}
    for section, schema in SCHEMA.items():
        required = section not in ("meta", "segment_defaults")
        out[section] = _validate_table(data.get(section, {}), schema, section, where, required=required)
    meta = out["meta"]
    meta.setdefault("name", "custom")
    meta.setdefault("story", "")
    meta.setdefault("sources", [])
    segs = data.get("segments") or []
    if not segs:
        raise InputError(f"{where}: segments: at least one [[segments]] table is needed")
    out["segments"] = []
    for i, seg in enumerate(segs):
        merged = {**out["segment_defaults"], **_validate_table(seg, SEGMENT_SCHEMA, f"segments[{i}]", where, False)}
        merged.setdefault("name", f"segment-{i}")
        out["segments"].append(_validate_table(merged, SEGMENT_SCHEMA, f"segments[{i}]", where, True))
    names = [s["name"] for s in out["segments"]]
    if len(set(names)) != len(names):
        raise InputError(f"{where}: segments: names must be unique, got {names}")
    if len(out["segments"]) > MAX_SEGMENTS:
        raise InputError(f"{where}: segments: at most {MAX_SEGMENTS} segments, got {len(out['segments'])}")
    total = sum(s["share"] for s in out["segments"])
    if abs(total - 1.0) > 1e-6:
        raise InputError(f"{where}: segments.share: shares must sum to 1, got {total:.6g}")
    for i, s in enumerate(out["segments"]):
        if abs(sum(s["initial_stage_mix"]) - 1.0) > 1e-6:
            raise InputError(f"{where}: segments[{i}].initial_stage_mix: shares must sum to 1")
    out["shocks"] = []
    for i, shock in enumerate(data.get("shocks") or []):
        sh = {"incident_multiplier": 1.0, "competitor_pull": 0.0, "quality": 0.0}
        sh.update(_validate_table(shock, SHOCK_SCHEMA, f"shocks[{i}]", where, False))
        for key in ("start", "end"):
            if key not in sh:
                raise InputError(f"{where}: missing key shocks[{i}].{key}")
        if sh["end"] < sh["start"]:
            raise InputError(f"{where}: shocks[{i}].end: must not be before start ({sh['start']})")
        out["shocks"].append(sh)
    lev = out["levers"]
    if lev["alarm_coverage_max"] < lev["alarm_coverage_base"]:
        raise InputError(f"{where}: levers.alarm_coverage_max: must be at least alarm_coverage_base")
    if lev["employee_engagement_max"] < lev["employee_engagement_base"]:
        raise InputError(f"{where}: levers.employee_engagement_max: must be at least employee_engagement_base")
    if out["market"]["size"] < out["run"]["customers"]:
        raise InputError(
            f"{where}: market.size: the market ({out['market']['size']}) is smaller than the customer base "
            f"({out['run']['customers']})"
        )
    _check_budgets(out, where)
    return out


def _check_budgets(out: dict[str, Any], where: str) -> None:
    """Every budget within :data:`MAX_MONEY_PER_CUSTOMER`: retention budgets per customer of the initial base,
    the acquisition budget per member of the market (it is spent on prospects)."""
    customers, market = out["run"]["customers"], out["market"]["size"]
    for section, keys in (("acquisition", ("budget",)), ("retention", tuple(out["retention"]))):
        for key in keys:
            per_customer = out[section][key] / (market if section == "acquisition" else customers)
            if per_customer > MAX_MONEY_PER_CUSTOMER:
                raise InputError(
                    f"{where}: {section}.{key}: {per_customer:.3g} per customer per period is beyond the "
                    f"modelling limit of {MAX_MONEY_PER_CUSTOMER:g} (money is summed in 64-bit cents)"
                )


def field_help(path: str) -> Field | None:
    """The schema entry of a dotted key such as ``churn.trust`` or ``segments.share``."""
    section, _, key = path.partition(".")
    if section in LIST_SECTIONS:
        return LIST_SECTIONS[section].get(key)
    return SCHEMA.get(section, {}).get(key)


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return repr(v) if math.isfinite(v) else ("inf" if v > 0 else "-inf")
    if isinstance(v, str):
        if "\n" in v:
            return '"""' + v.replace("\\", "\\\\").replace('"""', '\\"""') + '"""'
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    raise TypeError(f"cannot write {type(v).__name__} to TOML")


def dumps_toml(data: dict[str, Any]) -> str:
    """Write a scenario-shaped dictionary (tables and arrays of tables) as TOML."""
    lines: list[str] = []
    for section, value in data.items():
        if isinstance(value, dict):
            lines.append(f"[{section}]")
            lines += [f"{k} = {_toml_value(v)}" for k, v in value.items()]
            lines.append("")
        elif isinstance(value, list) and value and all(isinstance(x, dict) for x in value):
            for table in value:
                lines.append(f"[[{section}]]")
                lines += [f"{k} = {_toml_value(v)}" for k, v in table.items()]
                lines.append("")
        elif isinstance(value, list):
            continue  # an empty array of tables is simply absent
        else:
            lines.insert(0, f"{section} = {_toml_value(value)}")
    return "\n".join(lines)
