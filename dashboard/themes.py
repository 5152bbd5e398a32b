"""Template themes.

A theme is a folder of templates, `templates/themes/<name>/`, and a stylesheet,
`dashboard/static/dashboard/themes/<name>.css`. Any template a theme does not have comes from
`default`, so a theme overrides only what it changes; adding one needs no Python. The theme in
force is the `Theme` option (its default is the `THEME` setting), read on every render, so a
change made in the settings applies without a restart.
"""

from __future__ import annotations

import re
from functools import lru_cache

from django.conf import settings
from django.contrib.staticfiles import finders
from django.template import loader
from django.template.backends.django import Template

from oneapi import options

DEFAULT = "default"
_NAME = re.compile(r"[a-z0-9_-]{1,32}")


def current() -> str:
    name = options.get_str("Theme") or settings.THEME
    return name if _NAME.fullmatch(name) else DEFAULT


def template_names(name: str, theme: str | None = None) -> list[str]:
    """Where `name` is looked up: the theme's folder, then the default theme's."""
    theme = theme or current()
    names = [f"themes/{theme}/{name}"]
    if theme != DEFAULT:
        names.append(f"themes/{DEFAULT}/{name}")
    return names


def resolve(name: str) -> Template:
    return loader.select_template(template_names(name))


@lru_cache(maxsize=16)
def stylesheet(theme: str) -> str:
    """The static path of the theme's CSS; a theme without one uses the default's."""
    path = f"dashboard/themes/{theme}.css"
    return path if finders.find(path) else f"dashboard/themes/{DEFAULT}.css"
