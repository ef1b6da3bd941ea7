"""Security regression tests: the end-to-end fixtures (live servers) are shared with
tests/e2e, whose helpers live in tests/e2e/e2e_support.py."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

E2E = Path(__file__).resolve().parents[1] / "e2e"
if str(E2E) not in sys.path:
    sys.path.insert(0, str(E2E))

_spec = importlib.util.spec_from_file_location("authgate_e2e_fixtures_security",
                                               E2E / "conftest.py")
_e2e = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_e2e)

live_server = _e2e.live_server
