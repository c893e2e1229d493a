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
