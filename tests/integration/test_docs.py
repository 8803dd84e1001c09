"""The documentation keeps up with the code."""

from __future__ import annotations

from pathlib import Path

from eventflow.config import Settings

ROOT = Path(__file__).resolve().parents[2]


def test_every_setting_is_documented() -> None:
    text = (ROOT / "docs" / "configuration.md").read_text()
    missing = [name for name in Settings.model_fields if f"`EVENTFLOW_{name.upper()}`" not in text]
    assert not missing, f"add these to docs/configuration.md: {missing}"


def test_readme_quick_start_is_two_commands() -> None:
    readme = (ROOT / "README.md").read_text()
    quick_start = readme.split("## Quick start", 1)[1].split("##", 1)[0]
    commands = [
        line.split("#")[0].strip()
        for line in quick_start.split("```sh", 1)[1].split("```", 1)[0].splitlines()
        if line.strip()
    ]
    assert commands == ["make run", "make test"]


def test_documented_defaults_are_the_real_ones() -> None:
    text = (ROOT / "docs" / "configuration.md").read_text()
    documented = {
        cells[1].strip("` "): cells[3].strip()
        for cells in (line.split("|") for line in text.splitlines())
        if len(cells) > 4 and cells[1].strip().startswith("`EVENTFLOW_")
    }
    wrong = {}
    for name, field in Settings.model_fields.items():
        default = field.default
        # Only plain values can be compared; "(unset)", "2 on SQLite…" are explained in words.
        if isinstance(default, bool) or not isinstance(default, int | str) or default == "":
            continue
        shown = documented.get(f"EVENTFLOW_{name.upper()}")
        if shown is not None and shown.replace(",", "") != str(default):
            wrong[name] = (shown, default)
    assert not wrong, f"docs/configuration.md shows other defaults than the code: {wrong}"
