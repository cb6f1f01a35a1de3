"""Bad input ends in InputError (exit code 2, one line) or a valid result, never another exception.

Property tests generate values and files for the scenario schema, the priors loader and the
value checks; the CLI tests run each class of bad input once through ``tenure``.
"""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st
from tenure.models.base import load_priors, merge_priors
from typer.testing import CliRunner

from tenure import checks
from tenure.cli import app
from tenure.errors import InputError
from tenure.scenario import MAX_MARKET, SCHEMA, load_scenario

ANY_VALUE = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70), st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(), st.text(max_size=5), st.lists(st.floats(), max_size=5),
)
KEYS = [(section, key) for section, fields in SCHEMA.items() for key in fields]


def _toml_value(v: object) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return "nan" if math.isnan(v) else ("inf" if v == math.inf else "-inf" if v == -math.inf else repr(v))
    if isinstance(v, str):
        return '"' + v.encode("unicode_escape").decode("ascii").replace('"', '\\"') + '"'
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    return str(v)


def _finite_numbers(obj: object) -> bool:
    if isinstance(obj, dict):
        return all(_finite_numbers(v) for v in obj.values())
    if isinstance(obj, list):
        return all(_finite_numbers(v) for v in obj)
    return not isinstance(obj, float) or math.isfinite(obj)


@given(key=st.sampled_from(KEYS), value=ANY_VALUE)
def test_scenario_key_is_refused_or_valid(tmp_path_factory, key, value):
    path = tmp_path_factory.mktemp("sc") / "s.toml"
    path.write_text(f"[{key[0]}]\n{key[1]} = {_toml_value(value)}\n")
    try:
        sc = load_scenario(path)
    except InputError as exc:
        assert "\n" not in str(exc) and str(path) in str(exc)
        return
    assert _finite_numbers(sc.data)
    assert sc["market"]["size"] <= MAX_MARKET


@given(data=st.binary(min_size=1, max_size=64))
def test_scenario_bytes_are_refused_or_valid(tmp_path_factory, data):
    path = tmp_path_factory.mktemp("sc") / "s.toml"
    path.write_bytes(data)
    try:
        load_scenario(path)
    except InputError as exc:
        assert "\n" not in str(exc)


@given(name=st.sampled_from(["r", "alpha", "a", "b"]), param=st.sampled_from(["sigma", "alpha", "mu", "beta"]),
       value=ANY_VALUE, dist=st.sampled_from(["HalfNormal", "Gamma", "Normal", "NoSuch", "print"]))
def test_priors_are_refused_or_valid(tmp_path_factory, name, param, value, dist):
    path = tmp_path_factory.mktemp("pr") / "p.toml"
    path.write_text(f'[{name}]\ndist = "{dist}"\n{param} = {_toml_value(value)}\n')
    defaults = {"r": {"dist": "HalfNormal", "sigma": 1.0}, "alpha": {"dist": "HalfNormal", "sigma": 1.0}}
    try:
        merged = merge_priors(defaults, load_priors(path))
    except InputError as exc:
        assert "\n" not in str(exc)
        return
    assert _finite_numbers(merged)


@given(value=ANY_VALUE)
def test_checks_refuse_or_return_in_range(value):
    for check in (lambda v: checks.in_range(v, "--x", 0, 1), lambda v: checks.seed(v),
                  lambda v: checks.discount_rate(v)):
        try:
            out = check(value)
        except InputError as exc:
            assert str(exc).startswith("--")
            continue
        assert math.isfinite(out)


# -- each class of bad input through the CLI: exit code 2, one line, nothing written -------------------

runner = CliRunner()


def _one_line_refusal(args: list[str], out=None) -> None:
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert len(result.stderr.strip().splitlines()) == 1, result.output
    if out is not None:
        assert not out.exists()


@pytest.mark.parametrize("content", [b"\xff\xfe\x00binary\x00", "[market]\nsize = 1\n# caf\xe9\n".encode("latin-1")])
def test_scenario_not_utf8(tmp_path, content):
    (tmp_path / "s.toml").write_bytes(content)
    _one_line_refusal(["scenario", "validate", str(tmp_path / "s.toml")])


@pytest.mark.parametrize("body", [
    "[market]\nsize = 1e300\n", "[market]\nsize = 18446744073709551616\n",
    "[experience]\nproduct_quality = 1e308\n", "[acquisition]\nbudget = 1e300\n",
    "[run]\nperiods = 100000\n", "[[shocks]]\nstart = 99999999999999999999\nend = 1\n",
])
def test_scenario_beyond_limits(tmp_path, body):
    (tmp_path / "s.toml").write_text(body)
    _one_line_refusal(["scenario", "validate", str(tmp_path / "s.toml")])


def test_many_segments(tmp_path):
    seg = "[[segments]]\nname = 's{i}'\nshare = {share}\n"
    (tmp_path / "s.toml").write_text("".join(seg.format(i=i, share=1 / 255) for i in range(255)))
    _one_line_refusal(["scenario", "validate", str(tmp_path / "s.toml")])


@pytest.mark.parametrize("seed", ["-1", str(2**64)])
def test_simulate_seed_out_of_range(tmp_path, seed):
    _one_line_refusal(["simulate", "-n", "10", "-t", "1", "--seed", seed, "--out", str(tmp_path / "o")],
                      tmp_path / "o")


@pytest.mark.parametrize("body", ['[r]\ndist = "HalfNormal"\nsigma = -1\n', '[r]\ndist = "HalfNormal"\nsigma = nan\n',
                                  '[r]\ndist = "HalfNormal"\nsigma = "x"\n', 'r = [1, 2]\n', '[r]\ndist = "NoSuch"\n'])
def test_bad_priors(tmp_path, body):
    (tmp_path / "p.toml").write_text(body)
    (tmp_path / "d.csv").write_text("cohort,period,alive\na,0,100\na,1,80\na,2,70\n")
    _one_line_refusal(["fit", "sbg", str(tmp_path / "d.csv"), "--priors", str(tmp_path / "p.toml"),
                       "--method", "map", "--out", str(tmp_path / "o")], tmp_path / "o")


def test_priors_folder(tmp_path):
    (tmp_path / "d.csv").write_text("cohort,period,alive\na,0,100\na,1,80\na,2,70\n")
    _one_line_refusal(["fit", "sbg", str(tmp_path / "d.csv"), "--priors", str(tmp_path),
                       "--method", "map", "--out", str(tmp_path / "o")], tmp_path / "o")


@pytest.mark.parametrize("rate", ["-1", "nan", "inf"])
def test_discount_rate(tmp_path, rate):
    (tmp_path / "d.csv").write_text("cohort,period,alive\na,0,100\na,1,80\na,2,70\n")
    _one_line_refusal(["fit", "sbg", str(tmp_path / "d.csv"), "--discount-rate", rate,
                       "--method", "map", "--out", str(tmp_path / "o")], tmp_path / "o")


def test_negative_amounts(tmp_path):
    (tmp_path / "t.csv").write_text("customer_id,date,amount\n1,2024-01-01,10\n1,2024-02-01,-5\n2,2024-01-03,3\n")
    from tenure.models.clv_data import summary_from_transactions

    from tenure.io import read_table

    with pytest.raises(InputError, match="row 2"):
        summary_from_transactions(read_table(tmp_path / "t.csv"))


def test_out_under_a_file(tmp_path):
    (tmp_path / "f").write_text("x")
    _one_line_refusal(["simulate", "-n", "10", "-t", "1", "--out", str(tmp_path / "f" / "o")])


def test_last_resort_is_one_line(monkeypatch, capsys):
    import tenure.cli as cli

    def boom(*args, **kwargs):
        raise RuntimeError("boom\nsecond line")

    monkeypatch.setattr(cli, "app", boom)
    assert cli.run(["simulate"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("internal error: RuntimeError: boom") and "--debug" in err and len(err.splitlines()) == 1


def test_map_unidentified_parameter_is_refused(tmp_path):
    """Four distinct RFM rows leave the BG/NBD's a and b unidentified: the Laplace draws overflow to inf.

    That was an internal error (a histogram over [0, nan] in the report); now one line naming the parameter.
    """
    rows = [f"{i},{i % 4},{2.0 * (i % 4)},10.0" for i in range(1, 30)]
    (tmp_path / "rfm.csv").write_text("customer_id,frequency,recency,T\n" + "\n".join(rows) + "\n")
    res = CliRunner().invoke(app, ["fit", "bgnbd", str(tmp_path / "rfm.csv"), "--method", "map",
                                   "-o", str(tmp_path / "f")])
    assert res.exit_code == 2, res.output
    # the first parameter whose Laplace interval is unbounded is named (which one depends on the order of the check)
    assert "not identified" in res.stderr and any(f"parameter '{p}'" in res.stderr for p in ("r", "alpha", "a", "b"))
    assert not (tmp_path / "f").exists()


def test_an_approximate_posterior_with_a_non_finite_draw_is_refused_naming_the_parameter():
    # A hierarchical spread whose mode sits at zero (the joint model's segment spread with MAP) gave
    # Laplace draws of inf/NaN, and the fit crashed later while drawing its report.
    import arviz as az
    import numpy as np
    from tenure.models.base import _check_finite_draws

    from tenure.errors import InputError

    ok = az.from_dict(posterior={"a": np.ones((1, 5)), "b": np.zeros((1, 5))})
    _check_finite_draws(ok, "map")
    bad = az.from_dict(posterior={"a": np.ones((1, 5)), "sd": np.array([[1.0, np.inf, 2.0, np.nan, 1.0]])})
    with pytest.raises(InputError, match=r"--method map: parameter 'sd' is not identified"):
        _check_finite_draws(bad, "map")
