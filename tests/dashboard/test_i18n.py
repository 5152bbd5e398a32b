"""The Simplified Chinese catalogue: complete, valid, and its compiled .mo up to date.

The .mo is kept in the repository next to the .po, so that every way of running the gateway
(make run, Docker) has it without gettext installed; after editing the .po, run
`manage.py compilemessages -l zh_Hans -i .venv`. This test compiles the .po afresh (GNU
msgfmt, from Debian's gettext: CI installs it) and compares the two catalogues.
"""

from __future__ import annotations

import gettext
import shutil
import subprocess
from pathlib import Path

import pytest
from django.apps import apps
from django.conf import settings

from tests.conftest import REQUIRE_SERVICES

CATALOG = Path(settings.BASE_DIR) / "locale" / "zh_Hans" / "LC_MESSAGES"


def msgfmt() -> str:
    path = shutil.which("msgfmt")
    if path is None:
        message = "msgfmt (Debian's gettext) is not installed"
        if REQUIRE_SERVICES:
            pytest.fail(message + " (REQUIRE_SERVICES=1)")
        pytest.skip(message)
    return path


def load(path: Path) -> dict:
    with path.open("rb") as handle:
        return dict(gettext.GNUTranslations(handle)._catalog)  # type: ignore[attr-defined]


def test_catalog_is_complete_and_its_mo_is_current(tmp_path: Path) -> None:
    compiled = tmp_path / "django.mo"
    result = subprocess.run(
        [msgfmt(), "--check", "--statistics", "-o", str(compiled), str(CATALOG / "django.po")],
        capture_output=True,
        text=True,
        env={"LC_ALL": "C", "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 0, result.stderr
    assert "untranslated" not in result.stderr and "fuzzy" not in result.stderr, result.stderr
    assert load(CATALOG / "django.mo") == load(compiled), (
        "locale/zh_Hans/LC_MESSAGES/django.mo is stale: run manage.py compilemessages"
    )


def test_catalog_changes_no_translation_of_django_or_the_apps() -> None:
    """LOCALE_PATHS catalogues win over every app's: a msgid shared with Django, DRF or
    allauth would change their texts too (the `/api` validation messages among them)."""
    import django

    ours = load(CATALOG / "django.mo")
    catalogs = [Path(django.__file__).parent / "conf" / "locale"]
    catalogs += [Path(config.path) / "locale" for config in apps.get_app_configs()]
    clashes = {}
    for directory in catalogs:
        for path in (directory / "zh_Hans" / "LC_MESSAGES").glob("*.mo"):
            if path == CATALOG / "django.mo":
                continue
            theirs = load(path)
            clashes.update(
                {
                    f"{path}: {msgid!r}": (theirs[msgid], text)
                    for msgid, text in ours.items()
                    if msgid and msgid in theirs and theirs[msgid] != text
                }
            )
    assert clashes == {}
