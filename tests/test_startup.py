"""What installing the hook imports (issue 10: every process that enables callweave pays it).

Each test runs a fresh interpreter, from a project whose ``pyproject.toml`` has a profile
rule and a wrap rule, so ``sys.modules`` holds only what callweave itself imported.
"""

import json
import os
import subprocess
import sys
import textwrap

import pytest

CONFIG = """\
[tool.callweave]

[[tool.callweave.profile]]
modules = ["app.*"]
time_limit = "1s"

[[tool.callweave.wrap]]
modules = ["app.core"]
wrapper = "operator:call"
"""

#: Imported on first use only, not by ``import callweave, callweave.hook; install()``.
LAZY = (
    "multiprocessing",  # hooked into when the program imports it
    "multiprocessing.util",
    "tempfile",  # the pool spool's directory
    "platform",  # the JSON report
    "difflib",  # "did you mean" hints
    "pkgutil",
    "callweave.reports",  # the exit report
)


def run(tmp_path, code):
    """The JSON that ``code`` prints last, run in a fresh interpreter in the project."""
    (tmp_path / "pyproject.toml").write_text(CONFIG)
    (tmp_path / "main.py").write_text(textwrap.dedent(code))
    env = {k: v for k, v in os.environ.items() if not k.startswith("CALLWEAVE")}
    out = subprocess.run(
        [sys.executable, "main.py"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def test_install_does_not_import_what_it_does_not_need(tmp_path):
    out = run(
        tmp_path,
        """
        import json, sys
        import callweave, callweave.hook
        finder = callweave.install()
        print(json.dumps({"installed": finder is not None, "modules": sorted(sys.modules)}))
        """,
    )
    assert out["installed"]
    loaded = set(out["modules"])
    assert "callweave.hook" in loaded and "callweave.lifecycle" in loaded
    assert [m for m in LAZY if m in loaded] == []


def test_import_callweave_alone_imports_only_its_extension_and_errors(tmp_path):
    out = run(
        tmp_path,
        """
        import json, sys
        import callweave
        print(json.dumps(sorted(m for m in sys.modules if m.startswith("callweave"))))
        """,
    )
    assert out == ["callweave", "callweave._native", "callweave.errors"]


def test_the_public_api_resolves_after_install(tmp_path):
    out = run(
        tmp_path,
        """
        import json
        import callweave
        callweave.install()
        from callweave import flat_profile, report, stats, wrap_calls, CallSite
        ns = {}
        exec("from callweave import *", ns)
        missing = [n for n in callweave.__all__ if n not in ns]
        try:
            callweave.no_such_name
            error = None
        except AttributeError as exc:
            error = str(exc)

        @flat_profile(time_limit=10.0)
        def f(x):
            return abs(x)

        f(-1)
        print(json.dumps({
            "missing": missing,
            "dir": sorted(set(callweave.__all__) - set(dir(callweave))),
            "same": callweave.flat_profile is flat_profile
                    and callweave.install is callweave.hook.install,
            "submodules": [callweave.profiler.__name__, callweave.decorators.__name__],
            "counted": [s.count for s in stats() if s.qualname.endswith("f")],
            "error": error,
        }))
        """,
    )
    assert out["missing"] == [] and out["dir"] == []
    assert out["same"]
    assert out["submodules"] == ["callweave.profiler", "callweave.decorators"]
    assert out["counted"] == [1]
    assert out["error"] == "module 'callweave' has no attribute 'no_such_name'"


HOOKED = """
import json, sys
from callweave import lifecycle
mp = sys.modules.get("multiprocessing")
util = sys.modules.get("multiprocessing.util")
registered = [
    f for (_n, _i, f) in (util._afterfork_registry if util else {})
    if f is lifecycle._register_mp_finalizer
]
watching = [f for f in sys.meta_path if isinstance(f, lifecycle._WhenImported)]
print(json.dumps({
    "armed": lifecycle._state["mp_armed"],
    "registered": len(registered),
    "token": mp is not None and mp.current_process()._config.get(lifecycle._SPOOL_KEY)
             == lifecycle._state["spool"],
    "loader": mp is not None and type(mp.__loader__).__name__,
    "spec_loader": mp is not None and mp.__spec__.loader is mp.__loader__,
    "watching": len(watching),
}))
"""


@pytest.mark.parametrize("when", ["after", "before"])
def test_multiprocessing_is_hooked_when_imported(tmp_path, when):
    before = "import multiprocessing\n" if when == "before" else ""
    after = "import multiprocessing.pool\n" if when == "after" else ""
    # Installed twice: multiprocessing's after-fork hook is registered once all the same.
    out = run(
        tmp_path,
        f"{before}import callweave\ncallweave.install()\ncallweave.install()\n{after}" + HOOKED,
    )
    assert out == {
        "armed": True,
        "registered": 1,
        "token": True,
        "loader": "SourceFileLoader",
        "spec_loader": True,
        "watching": 0,
    }


def test_multiprocessing_is_not_hooked_before_it_is_imported(tmp_path):
    out = run(tmp_path, "import callweave\ncallweave.install()\n" + HOOKED)
    assert out["armed"] is False and out["watching"] == 1
