"""docs/configuration.md is generated from the declarations and must not go stale."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from authgate import docs
from authgate.settings import CORE_SETTINGS

ROOT = Path(__file__).resolve().parents[2]
CONFIGURATION_MD = ROOT / "docs" / "configuration.md"


def test_configuration_docs_are_up_to_date(capsys):
    status = docs.main(["--check", "--path", str(CONFIGURATION_MD)])
    assert status == 0, ("docs/configuration.md is stale; run "
                         ".venv/bin/python -m authgate.docs and commit the result")


def test_check_fails_on_a_stale_file(tmp_path, capsys):
    stale = tmp_path / "configuration.md"
    stale.write_text(CONFIGURATION_MD.read_text().replace("JWT_EXPIRATION", "JWT_EXPIRY"))
    assert docs.main(["--check", "--path", str(stale)]) == 1
    assert "docs/configuration.md is stale; run python -m authgate.docs" in capsys.readouterr().err
    assert docs.main(["--check", "--path", str(tmp_path / "missing.md")]) == 1


def test_write_then_check(tmp_path):
    target = tmp_path / "docs" / "configuration.md"
    assert docs.main(["--path", str(target)]) == 0
    assert docs.main(["--check", "--path", str(target)]) == 0


def test_module_runs_as_a_command():
    result = subprocess.run([sys.executable, "-m", "authgate.docs", "--check", "--path",
                             str(CONFIGURATION_MD)], capture_output=True, text=True, cwd=ROOT,
                            check=False)
    assert result.returncode == 0, result.stderr


def test_every_declared_setting_is_documented():
    text = docs.render()
    spec = docs.bundled_spec()
    for setting in spec:
        assert f"| `{setting.env}` | `{setting.ini_key}` |" in text
    assert {s.name for s in CORE_SETTINGS} <= {s.name for s in spec}
    # Bundled plugins' settings are attributed to them.
    assert spec.owners["jwt_secret"] == "signer_hs256"
    assert "plugin `signer_hs256`" in text


def test_secrets_have_no_default_shown():
    for line in docs.render().splitlines():
        if line.startswith("| `") and "**secret**" in line:
            assert "| — |" in line


def test_precedence_and_selection_rules_are_explained():
    text = docs.render()
    for phrase in ("default", ".env", "process environment", "DATABASE_DRIVER",
                   "JWT_SIGNING_ALGORITHM", "AUTH_MODE", "authgate.secrets_from_env_only",
                   "`30s`", "`1h30m`"):
        assert phrase in text
