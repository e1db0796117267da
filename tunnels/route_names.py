"""The names no tunnel may have because the bare domain uses them: the first path segment of
every route (`GET /<name>` would be both a page and a registration), the static files'
prefix and the well-known root paths.
"""

from __future__ import annotations

import functools

from django.conf import settings
from django.urls import get_resolver

# Root paths that are not in the URLconf but belong to the site all the same.
WELL_KNOWN_ROOT_PATHS = frozenset({"healthz", "robots.txt", "favicon.ico", ".well-known"})


def site_route_names() -> frozenset[str]:
    """The first path segment of every route of the bare domain (from the URLconf, so a new
    route is covered without a list to keep), the static files' prefix and the well-known
    paths: no tunnel may be called one of them, or `GET /<name>` would be both."""
    return _route_names(str(settings.ROOT_URLCONF), str(settings.STATIC_URL or ""))


@functools.cache
def _route_names(urlconf: str, static_url: str) -> frozenset[str]:
    names = set(WELL_KNOWN_ROOT_PATHS)
    static = static_url.strip("/").split("/")[0]
    if static and "://" not in static_url:
        names.add(static.lower())
    for pattern in get_resolver(urlconf).url_patterns:
        route = getattr(pattern.pattern, "_route", None)  # path(); re_path() has none
        if route is None:
            continue
        first = str(route).split("/", 1)[0]
        if first and "<" not in first:
            names.add(first.lower())
    return frozenset(names)
