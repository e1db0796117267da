"""README.md and docs/*.md read by one rule, so examples and links cannot drift from the code.

A fence is code when its info string starts with one of CODE_LANGUAGES. Code runs in the
tests unless its info string says why it cannot: ```sh no-test: runs until Ctrl-C```. A
fence in one of CONFIG_LANGUAGES (nginx, haproxy) is a configuration file, checked by that
program unless it says why not (```caddy no-check: ...```). Fences without a language are
output or diagrams, and never run.

Runnable fences are written for the quick start's relay (`localhost:8080`) and an app on
port 3000; the tests run them against a relay and an app on free ports, with 8080 and 3000
replaced by those ports and nothing else changed.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from harness.processes import ROOT

README = ROOT / "README.md"
DOCS = ROOT / "docs"
CODE_LANGUAGES = {"python", "sh", "bash", "shell", "console"}
SHELL_LANGUAGES = {"sh", "bash", "shell", "console"}
CONFIG_LANGUAGES = {"nginx", "haproxy", "caddy"}
NO_TEST = "no-test:"
NO_CHECK = "no-check:"
FENCE = re.compile(
    r"^(?P<fence>```+|~~~+)(?P<info>[^\n]*)\n(?P<body>.*?)^(?P=fence)[ \t]*$", re.M | re.S
)
HEADING = re.compile(r"^(#{1,6}) (.+?)#*[ \t]*$", re.M)
# [text](target): inline links, not images' sources inside code.
LINK = re.compile(r"(?<!!)\[[^\]\n]*\]\((?P<target>[^)\s]+)\)")


def pages() -> list[Path]:
    """Every page of the documentation: the README and docs/*.md."""
    return [README, *sorted(DOCS.glob("*.md"))]


def name(path: Path) -> str:
    return str(path.relative_to(ROOT))


@dataclass
class Fence:
    path: Path
    line: int  # 1-based line of the opening fence
    language: str
    info: str
    body: str
    section: str  # the nearest heading above it

    @property
    def is_code(self) -> bool:
        return self.language in CODE_LANGUAGES

    @property
    def runs(self) -> bool:
        return self.is_code and NO_TEST not in self.info

    @property
    def no_test_reason(self) -> str:
        return self.info.partition(NO_TEST)[2].strip()

    @property
    def is_config(self) -> bool:
        return self.language in CONFIG_LANGUAGES

    @property
    def checked(self) -> bool:
        return self.is_config and NO_CHECK not in self.info

    @property
    def no_check_reason(self) -> str:
        return self.info.partition(NO_CHECK)[2].strip()

    @property
    def id(self) -> str:
        return f"{name(self.path)}:{self.line}"

    def __str__(self) -> str:
        return f"{self.id} ({self.section}, {self.language})"


def without_fences(text: str) -> str:
    """The text with each fence's body blanked (line numbers kept): no headings or links there."""
    return FENCE.sub(lambda m: "\n" * m.group(0).count("\n"), text)


def fences(path: Path) -> list[Fence]:
    text = path.read_text()
    found = []
    for match in FENCE.finditer(text):
        before = text[: match.start()]
        headings = [m.group(2) for m in HEADING.finditer(without_fences(before))]
        info = match.group("info").strip()
        found.append(
            Fence(
                path=path,
                line=before.count("\n") + 1,
                language=info.split(" ", 1)[0] if info else "",
                info=info,
                body=match.group("body"),
                section=headings[-1] if headings else "",
            )
        )
    return found


def all_fences() -> list[Fence]:
    return [fence for path in pages() for fence in fences(path)]


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link keeps its text
    text = re.sub(r"[^\w\- ]", "", text.lower())
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """Every heading anchor of a page; a repeated heading gets -1, -2... as on GitHub."""
    seen: Counter[str] = Counter()
    found = set()
    for match in HEADING.finditer(without_fences(path.read_text())):
        base = slug(match.group(2))
        found.add(base if not seen[base] else f"{base}-{seen[base]}")
        seen[base] += 1
    return found


@dataclass
class Link:
    path: Path
    line: int
    target: str

    def __str__(self) -> str:
        return f"{name(self.path)}:{self.line} -> {self.target}"


def relative_links(path: Path) -> list[Link]:
    """Links to this repository's files and headings (not to other sites, nor mail)."""
    text = without_fences(path.read_text())
    text = re.sub(r"`[^`\n]*`", lambda m: " " * len(m.group(0)), text)  # code spans
    found = []
    for match in LINK.finditer(text):
        target = match.group("target")
        if re.match(r"[a-z][a-z0-9+.-]*:", target):  # https:, mailto:
            continue
        found.append(Link(path, text[: match.start()].count("\n") + 1, target))
    return found


def localised(body: str, relay_port: int, app_port: int) -> str:
    """The fence as run in a test: the quick start's ports replaced, nothing else."""
    body = re.sub(r"\b8080\b", str(relay_port), body)
    return re.sub(r"\b3000\b", str(app_port), body)
