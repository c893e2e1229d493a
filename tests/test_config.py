import json
import math
import os
import subprocess
import sys
import textwrap
import tomllib
from datetime import timedelta
from pathlib import Path

import pytest

from callweave.config import (
    ENV_VAR,
    CallbackSpec,
    Config,
    ProfileRule,
    Report,
    WrapRule,
    find_config,
    load_config,
    parse_config,
    parse_duration,
    resolve_callable,
)
from callweave.errors import CallweaveError, ConfigError

DESIGN_EXAMPLE = """\
[tool.callweave]
report = "text"                  # at exit: "text" | "json:PATH" | "pstats:PATH" | "none"

[[tool.callweave.profile]]       # flat profiling
modules = ["shop.**", "requests.sessions"]
functions = ["Session.request", "*.place_*"]   # qualname globs; default all
time_limit = "50ms"
above = "log"                    # "log" | "none" | "pkg.mod:callable"
below = "none"
ignore_builtins = true
blacklist = ["log.*"]            # same call-name syntax as the decorators

[[tool.callweave.wrap]]          # call wrapping
modules = ["shop.db.*"]
wrapper = "shop.tracing:trace_call"
pass_site = true
"""

FILE = Path("/srv/shop/pyproject.toml")


@pytest.fixture(autouse=True)
def no_env_config(monkeypatch):
    monkeypatch.delenv(ENV_VAR, raising=False)


def table_of(text: str) -> dict:
    return tomllib.loads(text)["tool"]["callweave"]


def parse(table: dict, path: Path | None = FILE) -> Config:
    return parse_config(table, path=path)


def profile(**extra) -> dict:
    return {"modules": ["shop.**"], "time_limit": "50ms", **extra}


def wrap(**extra) -> dict:
    return {"modules": ["shop.db.*"], "wrapper": "shop.tracing:trace_call", **extra}


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


# --------------------------------------------------------------------------- parsing


def test_design_example_parses_into_the_expected_objects():
    config = parse(table_of(DESIGN_EXAMPLE))
    assert config == Config(
        report=Report("text"),
        strict=False,
        profile=(
            ProfileRule(
                modules=("shop.**", "requests.sessions"),
                functions=("Session.request", "*.place_*"),
                time_limit=0.05,
                above=CallbackSpec("log"),
                below=CallbackSpec("none"),
                ignore_builtins=True,
                blacklist=("log.*",),
                whitelist=None,
            ),
        ),
        wrap=(
            WrapRule(
                modules=("shop.db.*",),
                functions=None,
                wrapper="shop.tracing:trace_call",
                pass_site=True,
                ignore_builtins=False,
            ),
        ),
        path=FILE,
    )
    assert config.profile[0].above is not None and config.profile[0].above.kind == "log"
    assert hash(config) == hash(parse(table_of(DESIGN_EXAMPLE)))


def test_defaults_of_a_minimal_profile_rule():
    config = parse({"profile": [{"modules": ["shop"], "time_limit": 1}]})
    (rule,) = config.profile
    assert rule.modules == ("shop",)
    assert rule.functions is None
    assert rule.time_limit == 1.0 and isinstance(rule.time_limit, float)
    assert rule.above == CallbackSpec.LOG
    assert rule.below == CallbackSpec.NONE
    assert rule.ignore_builtins is False
    assert rule.blacklist is None and rule.whitelist is None
    assert config.report == Report("text")  # a profile rule makes "text" the default
    assert config.strict is False
    assert config.wrap == ()


def test_defaults_of_a_minimal_wrap_rule():
    config = parse({"wrap": [{"modules": ["a.*"], "wrapper": "m:w"}]})
    (rule,) = config.wrap
    assert rule == WrapRule(modules=("a.*",), wrapper="m:w")
    assert rule.pass_site is False and rule.ignore_builtins is False and rule.functions is None
    assert config.report == Report("none")  # no profile rule: no report by default
    assert config.profile == ()


def test_an_empty_table_is_a_configuration_with_nothing_in_it():
    config = parse({}, path=None)
    assert config == Config()
    assert config.report == Report("none") and not config.strict and config.path is None
    assert not config.matches_module("anything")


def test_strict_and_explicit_report():
    config = parse({"strict": True, "report": "none", "profile": [profile()]})
    assert config.strict is True
    assert config.report == Report("none")


def test_callable_callbacks_and_whitelist():
    config = parse(
        {"profile": [profile(above="shop.alerts:slow", below="shop.alerts:fast", whitelist=["f"])]}
    )
    (rule,) = config.profile
    assert rule.above == CallbackSpec("callable", "shop.alerts:slow")
    assert rule.below.target == "shop.alerts:fast"
    assert str(rule.above) == "shop.alerts:slow"
    assert rule.whitelist == ("f",) and rule.blacklist is None


def test_an_empty_blacklist_is_no_blacklist():
    (rule,) = parse({"wrap": [wrap(blacklist=[])]}).wrap
    assert rule.blacklist is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("text", Report("text")),
        ("none", Report("none")),
        ("json:/tmp/out.json", Report("json", Path("/tmp/out.json"))),
        ("pstats:/tmp/out.pstats", Report("pstats", Path("/tmp/out.pstats"))),
        # relative to the configuring file's directory
        ("json:out/p.json", Report("json", Path("/srv/shop/out/p.json"))),
        ("pstats:p.prof", Report("pstats", Path("/srv/shop/p.prof"))),
        # ".." that stays inside the file's directory is normalised away
        ("json:out/../p.json", Report("json", Path("/srv/shop/p.json"))),
        ("json:./a/./b.json", Report("json", Path("/srv/shop/a/b.json"))),
    ],
)
def test_report_settings(text, expected):
    assert parse({"report": text}).report == expected


def test_relative_report_path_is_kept_without_a_file():
    assert parse({"report": "json:p.json"}, path=None).report == Report("json", Path("p.json"))


def test_report_text_round_trips():
    for text in ["text", "none", "json:/a/b.json", "pstats:/a/b c.prof"]:
        assert str(Report.parse(text)) == text
    assert Report.parse("json:C:\\x\\y.json").path == Path("C:\\x\\y.json")  # first ':' splits


def test_value_objects_validate_themselves():
    with pytest.raises(ValueError, match="needs a path"):
        Report("json")
    with pytest.raises(ValueError, match="takes no path"):
        Report("text", Path("x"))
    with pytest.raises(ValueError, match="unknown report kind"):
        Report("xml")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="needs a target"):
        CallbackSpec("callable")
    with pytest.raises(ValueError, match="not a callable reference"):
        CallbackSpec("callable", "nocolon")
    with pytest.raises(ValueError, match="takes no target"):
        CallbackSpec("log", "a:b")
    with pytest.raises(ValueError, match="bad glob"):
        WrapRule(modules=("a..b",), wrapper="m:w")


def test_rules_built_directly_take_lists_and_stay_hashable():
    # lists are accepted at run time (the fields are typed as the tuples they become)
    rule = ProfileRule(modules=["a", "b.*"], functions=["f"], time_limit=0.5, blacklist=["x"])  # type: ignore[arg-type]
    assert rule.modules == ("a", "b.*") and rule.functions == ("f",) and rule.blacklist == ("x",)
    assert hash(rule) == hash(
        ProfileRule(modules=("a", "b.*"), functions=("f",), time_limit=0.5, blacklist=("x",))
    )
    assert rule.matches_module("b.c") and not rule.matches_module("c")
    with pytest.raises(TypeError):
        ProfileRule(modules="shop", time_limit=1)  # type: ignore[arg-type]
    config = Config(profile=[rule])  # type: ignore[arg-type]
    assert config.profile == (rule,)


# --------------------------------------------------------------------------- errors

BAD = [
    # (table, key path, value as shown, reason fragment)
    ({"reprot": "text"}, "tool.callweave.reprot", '"text"', "did you mean 'report'?"),
    ({"report": "xml"}, "tool.callweave.report", '"xml"', '"html:PATH"'),
    ({"report": "html"}, "tool.callweave.report", '"html"', 'write "html:PATH"'),
    ({"report": "json"}, "tool.callweave.report", '"json"', 'write "json:PATH"'),
    ({"report": "pstats:"}, "tool.callweave.report", '"pstats:"', "needs a file"),
    ({"report": "text:x"}, "tool.callweave.report", '"text:x"', "takes no path"),
    ({"report": 1}, "tool.callweave.report", "1", "must be a string, not an integer"),
    # Repro 18: a config found upward may not pick a file outside its own tree by a relative
    # path, and "~" is never expanded into the home of whoever runs the program (item 27).
    ({"report": "json:~/.bashrc"}, "tool.callweave.report", '"json:~/.bashrc"', "'~' is not"),
    ({"report": "json:~victim/x"}, "tool.callweave.report", '"json:~victim/x"', "absolute"),
    (
        {"report": "json:../up.json"},
        "tool.callweave.report",
        '"json:../up.json"',
        "may not leave the directory of the configuration file (/srv/shop)",
    ),
    ({"report": "pstats:a/../../b"}, "tool.callweave.report", '"pstats:a/../../b"', "leave"),
    ({"report": "json:.."}, "tool.callweave.report", '"json:.."', "write an absolute path"),
    ({"strict": "yes"}, "tool.callweave.strict", '"yes"', "must be true or false, not a string"),
    (
        {"profile": {"modules": ["a"]}},
        "tool.callweave.profile",
        '{"modules": ["a"]}',
        "[[tool.callweave.profile]]",
    ),
    ({"wrap": 3}, "tool.callweave.wrap", "3", "must be an array of tables"),
    ({"profile": [3]}, "tool.callweave.profile[0]", "3", "must be a table, not an integer"),
    (
        {"modules": ["a"]},
        "tool.callweave.modules",
        '["a"]',
        "belongs in a [[tool.callweave.profile]], [[tool.callweave.transform]] or "
        "[[tool.callweave.wrap]] rule",
    ),
    (
        {"zzz": 1},
        "tool.callweave.zzz",
        "1",
        "the keys here are: report, strict, top, sort, prometheus, profile, transform, wrap",
    ),
    (
        {"profile": [profile(time_limt="5ms")]},
        "tool.callweave.profile[0].time_limt",
        '"5ms"',
        "did you mean 'time_limit'?",
    ),
    (
        {"profile": [profile(wrapper="m:w")]},
        "tool.callweave.profile[0].wrapper",
        '"m:w"',
        "it is a key of [[tool.callweave.wrap]] rules",
    ),
    (
        {"wrap": [wrap(time_limit=1)]},
        "tool.callweave.wrap[0].time_limit",
        "1",
        "it is a key of [[tool.callweave.profile]] rules",
    ),
    (
        {"wrap": [wrap(pass_sites=True)]},
        "tool.callweave.wrap[0].pass_sites",
        "true",
        "did you mean 'pass_site'?",
    ),
    (
        {"profile": [profile(), {"time_limit": 1}]},
        "tool.callweave.profile[1].modules",
        None,
        "required key is missing",
    ),
    (
        {"profile": [profile(modules=[])]},
        "tool.callweave.profile[0].modules",
        "[]",
        "must not be empty",
    ),
    (
        {"profile": [profile(modules="shop")]},
        "tool.callweave.profile[0].modules",
        '"shop"',
        'write ["shop"]',
    ),
    (
        {"profile": [profile(modules=["a", 2])]},
        "tool.callweave.profile[0].modules[1]",
        "2",
        "must be a string, not an integer",
    ),
    (
        {"profile": [profile(modules=["a", "b..c"])]},
        "tool.callweave.profile[0].modules[1]",
        '"b..c"',
        "empty level",
    ),
    (
        {"wrap": [wrap(modules=["requests.sessions:Session.*"])]},
        "tool.callweave.wrap[0].modules[0]",
        '"requests.sessions:Session.*"',
        "put function globs under 'functions'",
    ),
    (
        {"profile": [profile(functions=["Session.[x"])]},
        "tool.callweave.profile[0].functions[0]",
        '"Session.[x"',
        "unclosed character class",
    ),
    (
        {"profile": [profile(functions=[])]},
        "tool.callweave.profile[0].functions",
        "[]",
        "leave it out to select every function",
    ),
    (
        {"profile": [{"modules": ["a"]}]},
        "tool.callweave.profile[0].time_limit",
        None,
        "required key is missing",
    ),
    (
        {"profile": [profile(time_limit="-5ms")]},
        "tool.callweave.profile[0].time_limit",
        '"-5ms"',
        "must not be negative",
    ),
    (
        {"profile": [profile(time_limit="5 sec")]},
        "tool.callweave.profile[0].time_limit",
        '"5 sec"',
        "unknown unit 'sec'",
    ),
    (
        {"profile": [profile(time_limit="50")]},
        "tool.callweave.profile[0].time_limit",
        '"50"',
        "needs a unit",
    ),
    (
        {"profile": [profile(time_limit=True)]},
        "tool.callweave.profile[0].time_limit",
        "true",
        "not a boolean",
    ),
    (
        {"profile": [profile(time_limit=math.inf)]},
        "tool.callweave.profile[0].time_limit",
        "Infinity",
        "must be finite",
    ),
    (
        {"profile": [profile(time_limit=-1)]},
        "tool.callweave.profile[0].time_limit",
        "-1",
        "must not be negative",
    ),
    (
        {"profile": [profile(above="print")]},
        "tool.callweave.profile[0].above",
        '"print"',
        'must be "log", "none", "otel" or a callable',
    ),
    (
        {"profile": [profile(below="a:b:c")]},
        "tool.callweave.profile[0].below",
        '"a:b:c"',
        "not a callable reference",
    ),
    (
        {"profile": [profile(above=":f")]},
        "tool.callweave.profile[0].above",
        '":f"',
        "the module part is empty",
    ),
    (
        {"profile": [profile(above=False)]},
        "tool.callweave.profile[0].above",
        "false",
        "must be a string, not a boolean",
    ),
    (
        {"profile": [profile(ignore_builtins=1)]},
        "tool.callweave.profile[0].ignore_builtins",
        "1",
        "must be true or false, not an integer",
    ),
    (
        {"wrap": [{"modules": ["a"]}]},
        "tool.callweave.wrap[0].wrapper",
        None,
        "required key is missing",
    ),
    (
        {"wrap": [wrap(wrapper="shop.tracing.trace_call")]},
        "tool.callweave.wrap[0].wrapper",
        '"shop.tracing.trace_call"',
        'expected "package.module:attribute"',
    ),
    (
        {"wrap": [wrap(wrapper="shop-x:f")]},
        "tool.callweave.wrap[0].wrapper",
        '"shop-x:f"',
        "'shop-x' is not an identifier",
    ),
    (
        {"wrap": [wrap(wrapper="m:f.")]},
        "tool.callweave.wrap[0].wrapper",
        '"m:f."',
        "not a dotted name",
    ),
    (
        {"wrap": [wrap(pass_site="true")]},
        "tool.callweave.wrap[0].pass_site",
        '"true"',
        "must be true or false",
    ),
    (
        {"wrap": [wrap(blacklist=["log.*", "a["])]},
        "tool.callweave.wrap[0].blacklist[1]",
        '"a["',
        "unclosed '['",
    ),
    (
        {"wrap": [wrap(whitelist=["1x"])]},
        "tool.callweave.wrap[0].whitelist[0]",
        '"1x"',
        "not a Python identifier",
    ),
    ({"wrap": [wrap(whitelist=[])]}, "tool.callweave.wrap[0].whitelist", "[]", "must not be empty"),
    (
        {"wrap": [wrap(blacklist="log.*")]},
        "tool.callweave.wrap[0].blacklist",
        '"log.*"',
        "must be an array of strings, not a string",
    ),
    (
        {"wrap": [wrap(blacklist=["a"], whitelist=["b"])]},
        "tool.callweave.wrap[0].whitelist",
        '["b"]',
        "can not be used together with 'blacklist'",
    ),
    (
        {"profile": [profile(), profile(blacklist=["a"], whitelist=["b"])]},
        "tool.callweave.profile[1].whitelist",
        '["b"]',
        "together with 'blacklist'",
    ),
    ({"a.b": 1}, 'tool.callweave."a.b"', "1", "unknown key"),
]


@pytest.mark.parametrize(("table", "key", "shown", "reason"), BAD, ids=[b[1] for b in BAD])
def test_bad_input_names_file_key_value_and_reason(table, key, shown, reason):
    with pytest.raises(ConfigError) as info:
        parse(table)
    message = str(info.value)
    assert message.startswith(f"{FILE}: {key}")
    if shown is not None:
        assert f"{key} = {shown}: " in message
    else:
        assert f"{key}: " in message
    assert reason in message


def test_error_message_format_exactly():
    with pytest.raises(ConfigError) as info:
        parse({"profile": [profile(), profile(time_limit="-5ms")]})
    assert str(info.value) == (
        f'{FILE}: tool.callweave.profile[1].time_limit = "-5ms": a duration must not be negative'
    )
    with pytest.raises(ConfigError) as info:
        parse({"report": 5}, path=None)
    assert str(info.value) == "tool.callweave.report = 5: must be a string, not an integer"


def test_config_error_is_a_value_error_and_a_callweave_error():
    with pytest.raises(ConfigError) as info:
        parse({"strict": 1})
    assert isinstance(info.value, ValueError) and isinstance(info.value, CallweaveError)


def test_the_table_itself_must_be_a_table():
    with pytest.raises(ConfigError, match=r"tool\.callweave = 5: must be a table"):
        parse_config(5, path=None)  # type: ignore[arg-type]


def test_long_values_are_cut_in_messages():
    with pytest.raises(ConfigError) as info:
        parse({"report": "x" * 500})
    assert "..." in str(info.value) and len(str(info.value)) < 300


# --------------------------------------------------------------------------- durations


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("150us", 150e-6),
        ("150\u00b5s", 150e-6),  # micro sign
        ("150\u03bcs", 150e-6),  # Greek mu
        ("50ms", 0.05),
        ("0.1ms", 1e-4),
        ("2s", 2.0),
        ("1.5s", 1.5),
        (".5s", 0.5),
        ("5.s", 5.0),
        ("1e3ms", 1.0),
        ("2.5E-1s", 0.25),
        (" 50 ms ", 0.05),
        ("+1s", 1.0),
        ("0s", 0.0),
        ("-0ms", 0.0),
        # Go / humantime units and compound forms (issue 7, item 32).
        ("150ns", 150e-9),
        ("2m", 120.0),
        ("5 min", 300.0),
        ("1h", 3600.0),
        ("1.5h", 5400.0),
        ("1m30s", 90.0),
        ("1h2m3.5s", 3723.5),
        ("1h 30m", 5400.0),
        ("1s500ms", 1.5),
        ("2ms500us", 0.0025),
        ("1m0.5s", 60.5),
        (0, 0.0),
        (3, 3.0),
        (0.25, 0.25),
        (-0.0, 0.0),
        (timedelta(milliseconds=50), 0.05),
    ],
)
def test_parse_duration_good(value, seconds):
    result = parse_duration(value)
    assert type(result) is float
    assert result == seconds
    assert math.copysign(1, result) == 1


@pytest.mark.parametrize(
    ("value", "error", "reason"),
    [
        ("-5ms", ValueError, "must not be negative"),
        ("-1.5s", ValueError, "must not be negative"),
        (-1, ValueError, "must not be negative"),
        (-0.001, ValueError, "must not be negative"),
        (timedelta(seconds=-1), ValueError, "must not be negative"),
        (math.nan, ValueError, "must be finite"),
        (math.inf, ValueError, "must be finite"),
        ("1e999s", ValueError, "must be finite"),
        (10**400, ValueError, "too large"),
        ("", ValueError, "must not be empty"),
        ("   ", ValueError, "must not be empty"),
        ("5", ValueError, "needs a unit"),
        ("5MS", ValueError, "unknown unit 'MS'"),
        ("5d", ValueError, "unknown unit 'd'"),
        ("1h5sec", ValueError, "unknown unit 'sec'"),
        ("ms", ValueError, "not a duration"),
        ("nan s", ValueError, "not a duration"),
        ("inf", ValueError, "not a duration"),
        ("5ms 3", ValueError, "needs a unit"),
        ("1m30", ValueError, "needs a unit"),
        ("1,5s", ValueError, "not a duration"),
        ("1m-30s", ValueError, "not a duration"),
        ("-1m30s", ValueError, "must not be negative"),
        ("-", ValueError, "not a duration"),
        (True, TypeError, "not a boolean"),
        (False, TypeError, "not a boolean"),
        (None, TypeError, "a duration must be"),
        ([1], TypeError, "not an array"),
    ],
)
def test_parse_duration_bad(value, error, reason):
    with pytest.raises(error) as info:
        parse_duration(value)
    assert reason in str(info.value)
    assert not isinstance(info.value, ConfigError)


# --------------------------------------------------------------------------- discovery

CONFIGURED = """\
[tool.callweave]
report = "none"
[[tool.callweave.wrap]]
modules = ["{name}"]
wrapper = "m:w"
"""


def configured(name: str) -> str:
    return CONFIGURED.format(name=name)


@pytest.fixture
def tree(tmp_path):
    """tmp_path/proj/{pyproject.toml (configured), sub/pyproject.toml (other tool), sub/a/b}."""
    if find_config(tmp_path.parent) is not None:  # pragma: no cover - a stray config above
        pytest.skip("a pyproject.toml above the temporary directory configures callweave")
    root = tmp_path / "proj"
    write(root / "pyproject.toml", configured("root"))
    write(
        root / "sub" / "pyproject.toml", '[project]\nname = "sub"\n[tool.ruff]\nline-length = 1\n'
    )
    (root / "sub" / "a" / "b").mkdir(parents=True)
    return root


def test_upward_search_finds_the_nearest_configured_pyproject(tree):
    config = load_config(start=tree / "sub" / "a" / "b")
    assert config is not None
    assert config.path == tree / "pyproject.toml"
    assert config.wrap[0].modules == ("root",)
    assert find_config(tree / "sub" / "a" / "b") == tree / "pyproject.toml"


def test_a_nearer_configured_pyproject_wins(tree):
    write(tree / "sub" / "a" / "pyproject.toml", configured("inner"))
    config = load_config(start=tree / "sub" / "a" / "b")
    assert config is not None and config.wrap[0].modules == ("inner",)
    assert config.path == tree / "sub" / "a" / "pyproject.toml"


def test_search_starts_at_the_working_directory(tree, monkeypatch):
    monkeypatch.chdir(tree / "sub" / "a")
    config = load_config()
    assert config is not None and config.path == tree / "pyproject.toml"


def test_search_from_a_file_starts_at_its_directory(tree):
    script = write(tree / "sub" / "a" / "main.py", "")
    config = load_config(start=script)
    assert config is not None and config.path == tree / "pyproject.toml"


def test_search_with_a_relative_start(tree, monkeypatch):
    monkeypatch.chdir(tree / "sub")
    config = load_config(start=Path("a/../a/b"))
    assert config is not None and config.path == tree / "pyproject.toml"
    assert config.path.is_absolute()


def test_nothing_configured_is_none(tmp_path, monkeypatch):
    if find_config(tmp_path.parent) is not None:  # pragma: no cover
        pytest.skip("a pyproject.toml above the temporary directory configures callweave")
    write(tmp_path / "pyproject.toml", "[tool.black]\nline-length = 99\n")
    (tmp_path / "x").mkdir()
    assert load_config(start=tmp_path / "x") is None
    monkeypatch.chdir(tmp_path / "x")
    assert load_config() is None
    assert find_config() is None


def test_an_empty_callweave_table_counts_as_configured(tmp_path):
    write(tmp_path / "pyproject.toml", "[tool.callweave]\n")
    assert load_config(start=tmp_path) == Config(path=tmp_path / "pyproject.toml")


def test_invalid_toml_on_the_way_up_is_an_error_if_it_mentions_callweave(tree):
    bad = write(tree / "sub" / "pyproject.toml", "[tool.callweave\n")
    with pytest.raises(ConfigError, match="not valid TOML") as info:
        load_config(start=tree / "sub" / "a")
    assert str(bad) in str(info.value)


def test_unrelated_pyproject_files_are_not_parsed(tree):
    write(tree / "sub" / "pyproject.toml", "[tool.ruff\n")  # broken, but not ours
    config = load_config(start=tree / "sub" / "a")
    assert config is not None and config.path == tree / "pyproject.toml"


def test_a_mention_of_callweave_outside_tool_does_not_stop_the_search(tree):
    write(tree / "sub" / "pyproject.toml", '[project]\ndependencies = ["callweave"]\n')
    config = load_config(start=tree / "sub" / "a")
    assert config is not None and config.path == tree / "pyproject.toml"


def test_errors_in_a_found_file_name_the_file(tmp_path):
    file = write(tmp_path / "pyproject.toml", "[tool.callweave]\nstrict = 'no'\n")
    with pytest.raises(ConfigError) as info:
        load_config(start=tmp_path)
    assert str(info.value) == (
        f'{file}: tool.callweave.strict = "no": must be true or false, not a string'
    )


def test_report_path_is_relative_to_the_found_file(tmp_path, monkeypatch):
    write(tmp_path / "pyproject.toml", '[tool.callweave]\nreport = "json:out/r.json"\n')
    (tmp_path / "deep").mkdir()
    monkeypatch.chdir(tmp_path / "deep")
    config = load_config()
    assert config is not None
    assert config.report == Report("json", tmp_path / "out" / "r.json")


def test_env_var_names_the_file_and_beats_the_search(tree, tmp_path, monkeypatch):
    other = write(tmp_path / "elsewhere" / "callweave.toml", configured("from_env"))
    monkeypatch.setenv(ENV_VAR, str(other))
    monkeypatch.chdir(tree)
    config = load_config()
    assert config is not None
    assert config.path == other and config.wrap[0].modules == ("from_env",)


def test_env_var_relative_to_the_working_directory(tmp_path, monkeypatch):
    write(tmp_path / "c.toml", configured("rel"))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(ENV_VAR, "c.toml")
    config = load_config()
    assert config is not None and config.path == tmp_path / "c.toml"


def test_an_empty_env_var_is_unset(tree, monkeypatch):
    monkeypatch.setenv(ENV_VAR, "")
    config = load_config(start=tree)
    assert config is not None and config.path == tree / "pyproject.toml"


def test_env_var_naming_a_missing_file_is_an_error(tmp_path, monkeypatch):
    missing = tmp_path / "nope.toml"
    monkeypatch.setenv(ENV_VAR, str(missing))
    with pytest.raises(ConfigError) as info:
        load_config(start=tmp_path)
    assert str(info.value) == f"{missing}: no such file (named by {ENV_VAR})"


def test_env_var_naming_a_file_without_the_table_is_an_error(tmp_path, monkeypatch):
    file = write(tmp_path / "pyproject.toml", "[tool.ruff]\n")
    monkeypatch.setenv(ENV_VAR, str(file))
    with pytest.raises(ConfigError) as info:
        load_config()
    assert str(info.value) == f"{file}: has no [tool.callweave] table (named by {ENV_VAR})"


def test_env_var_naming_a_directory_is_an_error(tmp_path, monkeypatch):
    monkeypatch.setenv(ENV_VAR, str(tmp_path))
    with pytest.raises(ConfigError, match="cannot read it"):
        load_config()


def test_explicit_path_beats_env_var(tmp_path, monkeypatch):
    explicit = write(tmp_path / "a.toml", configured("explicit"))
    monkeypatch.setenv(ENV_VAR, str(tmp_path / "missing.toml"))
    config = load_config(explicit)
    assert config is not None and config.wrap[0].modules == ("explicit",)


def test_explicit_path_must_exist_and_have_the_table(tmp_path):
    with pytest.raises(ConfigError, match="no such file"):
        load_config(tmp_path / "missing.toml")
    file = write(tmp_path / "pyproject.toml", "[project]\nname = 'x'\n")
    with pytest.raises(ConfigError, match=r"has no \[tool\.callweave\] table"):
        load_config(file)
    broken = write(tmp_path / "broken.toml", "tool = {")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(broken)
    not_utf8 = tmp_path / "latin1.toml"
    not_utf8.write_bytes(b'[tool.callweave]\nreport = "\xe9"\n')
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(not_utf8)


def test_a_whole_file_with_utf8_units(tmp_path):
    file = write(
        tmp_path / "pyproject.toml",
        """\
        [tool.callweave]
        strict = true
        [[tool.callweave.profile]]
        modules = ["a"]
        time_limit = "250µs"
        """,
    )
    config = load_config(file)
    assert config is not None and config.strict
    assert config.profile[0].time_limit == 250e-6


def test_tool_callweave_not_a_table_in_a_found_file(tmp_path):
    write(tmp_path / "pyproject.toml", "[tool]\ncallweave = 3\n")
    with pytest.raises(ConfigError, match=r"tool\.callweave = 3: must be a table"):
        load_config(start=tmp_path)


# --------------------------------------------------------------------------- callables

MODULE = """\
import functools

def hook(*args, **kwargs):
    return ("hook", args, kwargs)

class Tracer:
    def __call__(self, call, /, *args, **kwargs):
        return call(*args, **kwargs)

    @staticmethod
    def trace(call, /, *args, **kwargs):
        return call(*args, **kwargs)

TRACER = Tracer()
NOT_CALLABLE = 42
partial_hook = functools.partial(hook, 1)
"""


@pytest.fixture
def make_module(tmp_path, monkeypatch):
    """Writes modules under tmp_path, importable for the test, forgotten afterwards."""
    monkeypatch.syspath_prepend(str(tmp_path))
    names: list[str] = []

    def make(name: str, text: str = MODULE) -> str:
        full = f"cw_cfgtest_{name}_{abs(hash(str(tmp_path))) % 10**8}"
        write(tmp_path / f"{full}.py", text)
        names.append(full)
        return full

    yield make
    for name in names:
        sys.modules.pop(name, None)


def test_resolve_callable_good(make_module):
    mod = make_module("good")
    hook = resolve_callable(f"{mod}:hook", "k")
    assert hook(1, a=2) == ("hook", (1,), {"a": 2})
    assert resolve_callable(f"{mod}:Tracer.trace", "k")(len, "abc") == 3
    assert resolve_callable(f"{mod}:TRACER", "k")(len, "ab") == 2  # callable instance
    assert resolve_callable(f"{mod}:Tracer", "k") is sys.modules[mod].Tracer  # a class
    assert resolve_callable(f"{mod}:partial_hook", "k")() == ("hook", (1,), {})
    assert resolve_callable("os.path:join", "k") is __import__("os").path.join


def test_resolve_callable_missing_module():
    with pytest.raises(ConfigError) as info:
        resolve_callable("cw_no_such_module_xyz.sub:f", "tool.callweave.wrap[0].wrapper")
    message = str(info.value)
    assert message.startswith('tool.callweave.wrap[0].wrapper = "cw_no_such_module_xyz.sub:f"')
    assert "cannot import module 'cw_no_such_module_xyz.sub'" in message
    assert "ModuleNotFoundError: No module named 'cw_no_such_module_xyz'" in message


def test_resolve_callable_module_that_fails_to_import(make_module):
    mod = make_module("boom", "raise RuntimeError('boom at import')\n")
    with pytest.raises(ConfigError) as info:
        resolve_callable(f"{mod}:f", "key.x", path=FILE)
    message = str(info.value)
    assert message.startswith(f'{FILE}: key.x = "{mod}:f": cannot import module')
    assert "RuntimeError: boom at import" in message
    assert isinstance(info.value.__cause__, RuntimeError)


@pytest.mark.parametrize(("code", "shown"), [("42", "42"), ("", "None"), ("'bye'", "'bye'")])
def test_resolve_callable_module_that_calls_sys_exit(make_module, code, shown):
    # Repro 29 (item 23): a module that calls sys.exit() on import (a script without a
    # __main__ guard) is a ConfigError naming the key, the callable and the reason.
    mod = make_module("exits", f"import sys\n\ndef report(*a):\n    pass\n\nsys.exit({code})\n")
    with pytest.raises(ConfigError) as info:
        resolve_callable(f"{mod}:report", "tool.callweave.profile[0].above", path=FILE)
    message = str(info.value)
    assert message.startswith(f'{FILE}: tool.callweave.profile[0].above = "{mod}:report": ')
    assert f"cannot import module {mod!r}: it called sys.exit({shown}) while being imported" in (
        message
    )
    assert isinstance(info.value.__cause__, SystemExit)


SYS_EXIT_PROJECT = {
    "pyproject.toml": '[tool.callweave]\n[[tool.callweave.profile]]\nmodules = ["appmod"]\n'
    'time_limit = "1ms"\nabove = "tool_cli:report"\n',
    "tool_cli.py": "import sys\n\ndef report(*a):\n    pass\n\nsys.exit(42)\n",
    "appmod.py": "def work():\n    return 1\n",
    "app.py": "import callweave.auto\nimport appmod\nappmod.work()\nprint('app ran')\n",
}


def test_sys_exit_in_a_configured_callable_is_not_silent(tmp_path):
    # Repro 29 end to end: the program stops with the ConfigError, not silently with status 42.
    for name, text in SYS_EXIT_PROJECT.items():
        write(tmp_path / name, text)
    r = subprocess.run(
        [sys.executable, "app.py"],
        cwd=tmp_path,
        env={k: v for k, v in os.environ.items() if not k.startswith("CALLWEAVE")},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 1 and "app ran" not in r.stdout
    assert "ConfigError" in r.stderr
    assert 'tool.callweave.profile[0].above = "tool_cli:report": cannot import module' in r.stderr
    assert "sys.exit(42)" in r.stderr


def test_resolve_callable_missing_attribute(make_module):
    mod = make_module("attr")
    with pytest.raises(ConfigError) as info:
        resolve_callable(f"{mod}:Tracer.nope", "tool.callweave.profile[0].above")
    message = str(info.value)
    assert f'tool.callweave.profile[0].above = "{mod}:Tracer.nope"' in message
    assert f"'{mod}.Tracer' has no attribute 'nope'" in message
    assert "type object 'Tracer' has no attribute 'nope'" in message  # the exception's text


def test_resolve_callable_not_callable(make_module):
    mod = make_module("notcallable")
    with pytest.raises(ConfigError) as info:
        resolve_callable(f"{mod}:NOT_CALLABLE", "tool.callweave.wrap[2].wrapper")
    message = str(info.value)
    assert f'tool.callweave.wrap[2].wrapper = "{mod}:NOT_CALLABLE"' in message
    assert f"'{mod}.NOT_CALLABLE' is not callable: it is a int" in message


def test_resolve_callable_malformed_spec():
    with pytest.raises(ConfigError, match=r'k = "os.path.join": not a callable reference'):
        resolve_callable("os.path.join", "k")


def test_config_resolve_maps_every_reference(make_module):
    mod = make_module("resolve")
    config = parse(
        {
            "profile": [profile(above=f"{mod}:hook", below=f"{mod}:TRACER")],
            "wrap": [wrap(wrapper=f"{mod}:Tracer.trace"), wrap(wrapper=f"{mod}:hook")],
        }
    )
    resolved = config.resolve()
    module = sys.modules[mod]
    assert resolved == {
        f"{mod}:hook": module.hook,
        f"{mod}:TRACER": module.TRACER,
        f"{mod}:Tracer.trace": module.Tracer.trace,
    }


def test_config_resolve_with_nothing_to_resolve():
    assert parse(table_of(DESIGN_EXAMPLE).copy() | {"wrap": []}).resolve() == {}


def test_config_resolve_raises_the_first_error_with_key_and_file(make_module):
    mod = make_module("resolve_err")
    config = parse(
        {
            "profile": [profile(), profile(below=f"{mod}:NOT_CALLABLE")],
            "wrap": [wrap(wrapper=f"{mod}:missing")],
        }
    )
    with pytest.raises(ConfigError) as info:
        config.resolve()
    assert str(info.value).startswith(
        f'{FILE}: tool.callweave.profile[1].below = "{mod}:NOT_CALLABLE": '
    )
    config = parse({"wrap": [wrap(wrapper=f"{mod}:hook"), wrap(wrapper=f"{mod}:missing")]})
    with pytest.raises(ConfigError, match=r"tool\.callweave\.wrap\[1\]\.wrapper = .*'missing'"):
        config.resolve()


# --------------------------------------------------------------------------- JSON


@pytest.mark.parametrize(
    "config",
    [
        parse(table_of(DESIGN_EXAMPLE)),
        parse(table_of(DESIGN_EXAMPLE), path=None),
        parse({}, path=None),
        parse(
            {
                "report": "pstats:rel/out.prof",
                "strict": True,
                "profile": [
                    profile(time_limit="0.1ms", whitelist=["a.b", "c[*]"], above="x.y:z"),
                    profile(
                        modules=["other"], functions=["A.b", "outer.<locals>.inner"], time_limit=0
                    ),
                ],
                "wrap": [wrap(ignore_builtins=True, blacklist=["log.*"], pass_site=True)],
            },
            path=Path("/p/pyproject.toml"),
        ),
        parse({"report": "json:rel.json"}, path=None),
    ],
)
def test_json_round_trip(config):
    text = config.to_json()
    again = Config.from_json(text)
    assert again == config
    assert again.path == config.path
    assert again.report == config.report
    assert again.to_json() == text
    json.loads(text)  # plain JSON
    assert text.isascii()  # safe in an environment variable


def test_json_is_canonical():
    a = parse(table_of(DESIGN_EXAMPLE))
    b = parse(dict(reversed(list(table_of(DESIGN_EXAMPLE).items()))))
    assert a.to_json() == b.to_json()


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("not json", "not valid JSON"),
        ("[]", "made by Config.to_json"),
        ('{"format": 99, "path": null, "table": {}}', "made by Config.to_json"),
        ('{"format": 1, "path": 3, "table": {}}', "made by Config.to_json"),
        ('{"format": 1, "path": null}', "made by Config.to_json"),
    ],
)
def test_from_json_rejects_other_text(text, reason):
    with pytest.raises(ConfigError, match=reason):
        Config.from_json(text)


def test_from_json_validates_the_table():
    text = json.dumps({"format": 1, "path": "/a/pyproject.toml", "table": {"strict": "x"}})
    with pytest.raises(ConfigError, match=r'^/a/pyproject.toml: tool\.callweave\.strict = "x"'):
        Config.from_json(text)


# --------------------------------------------------------------------------- module rules

RULES = {
    "profile": [
        {"modules": ["shop.**"], "time_limit": "50ms"},
        {"modules": ["requests.sessions"], "functions": ["Session.request"], "time_limit": 1},
        {"modules": ["shop.api"], "time_limit": "1s", "above": "shop.alerts:slow"},
    ],
    "wrap": [
        {"modules": ["shop.db.*"], "wrapper": "shop.tracing:trace_call"},
        {"modules": ["*"], "wrapper": "top:level"},
    ],
}


def rules_config(table: dict = RULES, **changes) -> Config:
    return parse(json.loads(json.dumps(table)) | changes)


@pytest.mark.parametrize(
    ("module", "profile_indexes", "wrap_indexes"),
    [
        ("shop", [0], [1]),
        ("shop.api", [0, 2], []),
        ("shop.db.orders", [0], [0]),
        ("shop.db", [0], []),
        ("shopping", [], [1]),
        ("requests.sessions", [1], []),
        ("requests", [], [1]),
        ("requests.sessions.x", [], []),
        ("other.mod", [], []),
    ],
)
def test_rules_for_module(module, profile_indexes, wrap_indexes):
    config = rules_config()
    profile_rules, wrap_rules = config.rules_for_module(module)
    assert profile_rules == [config.profile[i] for i in profile_indexes]
    assert wrap_rules == [config.wrap[i] for i in wrap_indexes]
    assert config.matches_module(module) == bool(profile_indexes or wrap_indexes)


def test_rules_hash_is_a_stable_hex_digest():
    a, b = rules_config(), rules_config()
    for module in ["shop", "shop.api", "shop.db.x", "nothing.here"]:
        digest = a.rules_hash(module)
        assert len(digest) == 64 and int(digest, 16) >= 0
        assert digest == b.rules_hash(module)
        assert digest == Config.from_json(a.to_json()).rules_hash(module)
    # modules without rules all share one digest
    assert rules_config().rules_hash("nothing.here") == rules_config({}).rules_hash("x")


def test_rules_hash_differs_between_modules_with_different_rules():
    config = rules_config()
    assert config.rules_hash("shop.api") != config.rules_hash("shop")
    assert config.rules_hash("shop.db.a") == config.rules_hash("shop.db.b")  # same rules


def changed(section: str, index: int, **changes) -> dict:
    table = json.loads(json.dumps(RULES))
    table[section][index].update(changes)
    return table


@pytest.mark.parametrize(
    "table",
    [
        changed("profile", 0, time_limit="51ms"),
        changed("profile", 0, functions=["*"]),
        changed("profile", 0, above="none"),
        changed("profile", 0, below="log"),
        changed("profile", 0, ignore_builtins=True),
        changed("profile", 0, blacklist=["x"]),
        changed("profile", 0, whitelist=["x"]),
        changed("profile", 0, modules=["shop.**", "extra"]),
        changed("wrap", 0, wrapper="shop.tracing:other"),
        changed("wrap", 0, pass_site=True),
        changed("wrap", 0, functions=["f"]),
    ],
)
def test_rules_hash_changes_when_a_rule_for_the_module_changes(table):
    assert rules_config(table).rules_hash("shop.db.orders") != rules_config().rules_hash(
        "shop.db.orders"
    )


def test_rules_hash_changes_when_rule_order_changes():
    table = json.loads(json.dumps(RULES))
    table["profile"] = [table["profile"][2], table["profile"][0], table["profile"][1]]
    assert rules_config(table).rules_hash("shop.api") != rules_config().rules_hash("shop.api")


@pytest.mark.parametrize(
    "table",
    [
        changed("profile", 1, time_limit="2s"),  # requests.sessions only
        changed("profile", 2, above="none"),  # shop.api only
        RULES | {"profile": [*RULES["profile"], {"modules": ["zzz"], "time_limit": 0}]},
        RULES | {"wrap": [{"modules": ["elsewhere.*"], "wrapper": "a:b"}, *RULES["wrap"]]},
        RULES | {"report": "json:/x.json", "strict": True},
    ],
)
def test_rules_hash_ignores_rules_for_other_modules_and_global_settings(table):
    assert rules_config(table).rules_hash("shop.db.orders") == rules_config().rules_hash(
        "shop.db.orders"
    )
    other_file = parse(json.loads(json.dumps(RULES)), path=Path("/elsewhere/pyproject.toml"))
    assert other_file.rules_hash("shop.db.orders") == rules_config().rules_hash("shop.db.orders")


# --------------------------------------------------------------------------- trust (item 27)


@pytest.mark.parametrize("report", ["json:~/.bashrc", "json:../home/.bashrc"])
def test_a_config_found_upward_cannot_write_outside_its_tree(tmp_path, report):
    # Repro 18: a pyproject.toml in a shared parent directory names a file in the home of
    # whoever runs a program below it. The hook refuses the configuration; the file survives.
    shared, home = tmp_path / "shared", tmp_path / "home"
    victim = home / ".bashrc"
    write(victim, "export PATH=$HOME/bin:$PATH\n")
    write(
        shared / "pyproject.toml",
        f'[tool.callweave]\nreport = "{report}"\n\n[[tool.callweave.profile]]\n'
        'modules = ["json"]\ntime_limit = "1s"\n',
    )
    work = shared / "scratch" / "sub"
    write(work / "app.py", "import callweave.auto\nprint('app ran')\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("CALLWEAVE")}
    r = subprocess.run(
        [sys.executable, "app.py"],
        cwd=work,
        env={**env, "HOME": str(home)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert victim.read_text() == "export PATH=$HOME/bin:$PATH\n"
    assert r.returncode == 1, r.stderr
    assert f'{shared / "pyproject.toml"}: tool.callweave.report = "{report}": ' in r.stderr
    assert "write the absolute path" in r.stderr or "write an absolute path" in r.stderr
