"""JSON from a request, bounded: its size by the caller, its depth by the interpreter's
recursion limit. `json.loads('[' * 100000)` raises RecursionError, not ValueError: caught
here, once, so no view answers a nested body with a 500 and a traceback. Every view (and
header parser) in tunnels/ that reads JSON sent by a client goes through `loads`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any


class BadJson(ValueError):
    """Not JSON we read: `reason` says why in a few words, for the caller's message."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def loads(
    raw: bytes | str,
    *,
    max_bytes: int,
    object_pairs_hook: Callable[[list[tuple[str, Any]]], Any] | None = None,
) -> Any:
    """`raw` parsed, or BadJson: past `max_bytes`, not UTF-8, not JSON, or nested too
    deeply, or with a number past Python's digit limit. Exceptions of `object_pairs_hook`
    pass through."""
    size = len(raw.encode("utf-8", "replace") if isinstance(raw, str) else raw)
    if size > max_bytes:
        raise BadJson(f"it is {size} bytes, past the {max_bytes} accepted")
    try:
        return json.loads(
            raw, object_pairs_hook=_Hook(object_pairs_hook) if object_pairs_hook else None
        )
    except _HookRaised as raised:
        raise raised.original from None
    except json.JSONDecodeError as exc:
        raise BadJson(f"not JSON (at character {exc.pos})") from None
    except UnicodeDecodeError:
        raise BadJson("not UTF-8") from None
    except RecursionError:
        raise BadJson("nested too deeply") from None
    except ValueError:  # int(): "Exceeds the limit (4300 digits)", sys.int_info
        raise BadJson("a number has too many digits") from None


class _HookRaised(Exception):  # not a ValueError: it passes the handlers above untouched
    def __init__(self, original: Exception) -> None:
        super().__init__(str(original))
        self.original = original


class _Hook:
    """The caller's hook, whose own exceptions are told apart from the parser's."""

    def __init__(self, hook: Callable[[list[tuple[str, Any]]], Any]) -> None:
        self.hook = hook

    def __call__(self, pairs: list[tuple[str, Any]]) -> Any:
        try:
            return self.hook(pairs)
        except Exception as exc:
            raise _HookRaised(exc) from exc
