"""The one rule shape: a registered transform, its options, a function selector, a call filter."""

import pytest

from callweave import _native


def test_the_registry_names_wrap_and_profile():
    assert {"wrap", "profile"} <= set(_native.TRANSFORMS)
    assert all(isinstance(v, str) and v for v in _native.TRANSFORMS.values())


def test_a_rule_knows_its_transform():
    rule = _native.Rule("wrap", {"wrapper": "__w__", "sites": None}, functions=["f"])
    assert rule.transform == "wrap"
    assert rule.selects("f") and not rule.selects("g")


@pytest.mark.parametrize(
    ("transform", "options", "error", "message"),
    [
        ("nope", {}, ValueError, 'unknown transform "nope" (registered: wrap, profile'),
        ("wrap", {}, ValueError, 'transform "wrap": option "wrapper": missing (required)'),
        ("wrap", {"wrapper": "__w__", "x": "y"}, ValueError, 'option "x": unknown option'),
        ("wrap", {"wrapper": "__w__", "sites": True}, ValueError, "expected a string, got true"),
        ("wrap", {"wrapper": 1}, TypeError, 'option "wrapper" must be a str, a bool or a list'),
        ("wrap", {"wrapper": "w"}, None, None),
    ],
)
def test_bad_transforms_and_options_are_named(transform, options, error, message):
    if error is None:  # injected names are checked when the plan is
        with pytest.raises(ValueError, match=r'injected name "w"'):
            _native.rewrite("def f():\n    g()\n", [_native.Rule(transform, options)])
        return
    with pytest.raises(error) as info:
        _native.Rule(transform, options)
    assert message in str(info.value)


def test_a_rewrite_without_slot_transforms_has_no_constants():
    result = _native.rewrite(
        "def f():\n    return g(1)\n", [_native.Rule("wrap", {"wrapper": "__w__"})]
    )
    assert result.constants == []
    assert result.source == "def f():\n    return __w__(g, 1)\n"


def test_the_constants_prefix_is_checked():
    with pytest.raises(ValueError, match="injected name"):
        _native.rewrite("def f():\n    pass\n", [], constants="k_")


def test_sites_and_functions_are_typed_and_sites_round_trip_through_rows():
    source = "def f(x):\n    return g(x) + h()\n"
    rules = [
        _native.Rule("wrap", {"wrapper": "__w__"}),
        _native.Rule(
            "profile",
            {
                "enter": "__e__",
                "exit": "__x__",
                "timer": "__t__",
                "atimer": "__a__",
                "record": "__r__",
            },
        ),
    ]
    result = _native.rewrite(source, rules)
    g, h = result.sites
    assert (g.id, g.function, g.line, g.col, g.end_line, g.end_col) == (0, "f", 2, 11, 2, 15)
    assert (g.text, g.callee, g.awaited, h.callee) == ("g(x)", "g", False, "h")
    assert _native.Site(*g.row()) == g and hash(_native.Site(*g.row())) == hash(g)
    assert g != h and len({g, h, _native.Site(*h.row())}) == 2
    (f,) = result.functions
    assert (f.qualname, f.first_line, f.def_line, f.rules) == ("f", 1, 1, [0, 1])
    assert f.original_text == source.rstrip("\n")
    assert "__e__(0)" in f.new_text
    assert f.profile is not None
    assert (f.profile.index, f.profile.rule, f.profile.sites) == (0, 1, [0, 1])
    assert "Site(id=0" in repr(g) and 'RewrittenFunction(qualname="f"' in repr(f)


def test_function_and_site_rows_hold_the_objects_fields():
    source = "def f(x):\n    return g(x) + h()\n\nclass C:\n    def m(self):\n        k()\n"
    profile = {"enter": "__e__", "exit": "__x__", "timer": "__t__", "atimer": "__a__"}
    rules = [
        _native.Rule("wrap", {"wrapper": "__w__"}, functions=["C.*"]),
        _native.Rule("profile", {**profile, "record": "__r__"}, functions=["f"]),
    ]
    result = _native.rewrite(source, rules)
    assert result.function_rows() == [
        (
            f.qualname,
            f.first_line,
            f.rules,
            None if f.profile is None else (f.profile.index, f.profile.rule, f.profile.sites),
        )
        for f in result.functions
    ]
    assert [row[3] is None for row in result.function_rows()] == [False, True]
    assert result.site_rows() == [s.row() for s in result.sites]
    assert len(result.site_rows()) == 3
