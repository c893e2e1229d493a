"""The README's wrapper examples work on wrapped calls that pass ``call=`` or ``site=``.

Issue 7 item 31: with ``def wrapper(call, *args, **kwargs)`` a wrapped ``f(x, call=cb)`` fails
with "got multiple values for argument 'call'"; the documented signature is positional-only.
"""

import re
from pathlib import Path

from callweave import wrap_calls

README = Path(__file__).resolve().parent.parent / "README.md"
PYTHON_BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.S)
# Functions whose first parameter is `call`: the wrappers the README shows.
WRAPPER_DEFS = [
    m for block in PYTHON_BLOCKS for m in re.findall(r"^def \w+\(call\b[^)]*\):", block, re.M)
]


def submit(job, call=None, site=None):
    return (job, call, site)


def test_the_readme_shows_wrappers_and_each_is_positional_only():
    assert WRAPPER_DEFS
    for signature in WRAPPER_DEFS:
        assert re.search(r"\(call(, site)?, /, ", signature), signature


def test_the_readmes_wrapper_passes_call_and_site_keywords_through(capsys):
    (block,) = [b for b in PYTHON_BLOCKS if "def basic_wrapper(" in b]
    namespace: dict = {}
    exec(block.partition("@wrap_calls")[0], namespace)
    basic_wrapper = namespace["basic_wrapper"]

    @wrap_calls(wrapper=basic_wrapper)
    def uses_call_keywords():
        return submit(1, call="cb"), submit(2, site="s", call=None)

    assert uses_call_keywords() == ((1, "cb", None), (2, None, "s"))
    assert "Before submit" in capsys.readouterr().out


def test_the_documented_pass_site_signature_passes_call_and_site_keywords_through():
    seen = []

    def with_site(call, site, /, *args, **kwargs):
        seen.append(site.source)
        return call(*args, **kwargs)

    @wrap_calls(wrapper=with_site, pass_site=True)
    def uses_call_keywords():
        return submit(1, call="cb", site="s")

    assert uses_call_keywords() == (1, "cb", "s")
    assert seen == ['submit(1, call="cb", site="s")']
