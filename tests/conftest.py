"""Shared test set-up: ``media`` importable, and helpers to run the real ``restorer`` command."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))  # `import media` from any test folder



def restorer_command() -> list[str]:
    """The installed console script (its exit codes are what users get), else ``python -m``."""
    script = shutil.which("restorer")
    return [script] if script else [sys.executable, "-m", "restorer.cli"]


def run_restorer(*args: str | Path, cwd: str | Path | None = None, timeout: float = 120,
                 env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run ``restorer ARGS`` in a subprocess; a hang fails the test through ``timeout``."""
    full_env = {k: v for k, v in os.environ.items() if k != "RESTORER_DEBUG"}
    full_env.update(env or {})
    return subprocess.run([*restorer_command(), *map(str, args)], cwd=cwd, env=full_env, capture_output=True,
                          text=True, timeout=timeout)


def error_line(proc: subprocess.CompletedProcess) -> str:
    """The one error line of a failed run; fails when there is a traceback or more than one line."""
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("restorer: error:")]
    assert len(errors) == 1, proc.stderr
    return errors[0]


class _Restorer:
    """The fixture's object: call it to run ``restorer ARGS``; ``command()`` for Popen."""

    __call__ = staticmethod(run_restorer)
    command = staticmethod(restorer_command)


@pytest.fixture
def restorer() -> _Restorer:
    """``restorer(*args, cwd=..., timeout=...)`` -> CompletedProcess of the real command."""
    return _Restorer()


@pytest.fixture
def one_error():
    """``one_error(proc)`` -> the single ``restorer: error:`` line (no traceback allowed)."""
    return error_line
