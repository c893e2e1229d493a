"""``import callweave.auto`` installs the import hook at startup.

The configuration comes from ``CALLWEAVE_CONFIG_JSON`` (set for child processes of an
instrumented process), else the file named by ``CALLWEAVE_CONFIG``, else the nearest
``pyproject.toml`` with a ``[tool.callweave]`` table from the working directory upward. A bad
configuration raises :class:`callweave.errors.ConfigError` naming the key and the reason.

Under ``python -E`` or ``-I`` (``sys.flags.ignore_environment``) callweave's environment
variables are ignored as Python's own ``PYTHON*`` ones are: isolated means isolated. The
startup ``.pth`` installed with callweave then does not even import this module, so children
started that way are not instrumented; an explicit ``import callweave.auto`` in such a process
still finds ``pyproject.toml``.
"""

import os
import sys

from callweave.config import Config
from callweave.hook import install

_inherited = None if sys.flags.ignore_environment else os.environ.get("CALLWEAVE_CONFIG_JSON")
finder = install(Config.from_json(_inherited) if _inherited else None, child=_inherited is not None)
