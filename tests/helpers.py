"""Helpers shared by several test modules (plain functions and constants, not fixtures)."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

# every unit of the smoke profile (lib.units.list_units), in the order the units list prints them
SMOKE_UNITS = [
    "tune/synthetic/seed0", "tune/synthetic/seed1", "tune/synthetic_pair/seed0", "tune/synthetic_pair/seed1",
    "control/synthetic/seed0",
    "baseline/synthetic/seed0", "baseline/synthetic/seed1", "baseline/synthetic_pair/seed0",
    "baseline/synthetic_pair/seed1",
    "transfer/synthetic_to_synthetic_pair/seed0", "panda/synthetic_to_synthetic_pair/seed0",
    "transfer/synthetic_to_synthetic_pair/seed1", "panda/synthetic_to_synthetic_pair/seed1",
    "transfer/synthetic_pair_to_synthetic/seed0", "panda/synthetic_pair_to_synthetic/seed0",
    "transfer/synthetic_pair_to_synthetic/seed1", "panda/synthetic_pair_to_synthetic/seed1",
]
SHORT_STUDY = {"seeds": [0], "steps": 10, "eval_every": 5}


def chromium() -> str:
    """The headless browser, or skip (the CI script installs Debian's 'chromium')."""
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    pytest.skip("headless Chromium not installed (Debian package 'chromium'; .ci/run installs it)")


def chromium_run(browser: str, page: Path, tmp_path: Path, *extra: str, budget_ms: int = 5000,
                 timeout: int = 120) -> subprocess.CompletedProcess:
    """Open `page` in headless Chromium with no network services, a fresh profile and a 1280x1600 window."""
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1280,1600",
             f"--virtual-time-budget={budget_ms}", *extra, page.as_uri()]
    return subprocess.run([browser, *flags], capture_output=True, text=True, timeout=timeout)
