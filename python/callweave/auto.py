"""``import callweave.auto`` installs the import hook at startup.

The configuration comes from ``CALLWEAVE_CONFIG_JSON`` (set for child processes of an
instrumented process), else the file named by ``CALLWEAVE_CONFIG``, else the nearest
``pyproject.toml`` with a ``[tool.callweave]`` table from the working directory upward. A bad
configuration raises :class:`callweave.errors.ConfigError` naming the key and the reason.
"""

import os

from callweave.config import Config
from callweave.hook import install

_inherited = os.environ.get("CALLWEAVE_CONFIG_JSON")
finder = install(Config.from_json(_inherited) if _inherited else None, child=_inherited is not None)
