"""The README's code fences, found by one rule, so examples cannot drift from the code.

A fence is code when its info string starts with one of CODE_LANGUAGES. Code runs in the
tests unless its info string says why it cannot: ```sh no-test: runs until Ctrl-C```.
Fences without a language are output, diagrams or configuration files, and never run.

Runnable fences are written for the quick start's relay (`localhost:8080`) and an app on
port 3000; the tests run them against a relay and an app on free ports, with 8080 and 3000
replaced by those ports and nothing else changed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

CODE_LANGUAGES = {"python", "sh", "bash", "shell", "console"}
NO_TEST = "no-test:"
FENCE = re.compile(
    r"^(?P<fence>```+|~~~+)(?P<info>[^\n]*)\n(?P<body>.*?)^(?P=fence)[ \t]*$", re.M | re.S
)


@dataclass
class Fence:
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

    def __str__(self) -> str:
        return f"README.md:{self.line} ({self.section}, {self.language})"


def fences(path: Path) -> list[Fence]:
    text = path.read_text()
    found = []
    for match in FENCE.finditer(text):
        before = text[: match.start()]
        headings = re.findall(r"^#+ (.+)$", before, re.M)
        info = match.group("info").strip()
        found.append(
            Fence(
                line=before.count("\n") + 1,
                language=info.split(" ", 1)[0] if info else "",
                info=info,
                body=match.group("body"),
                section=headings[-1] if headings else "",
            )
        )
    return found


def localised(body: str, relay_port: int, app_port: int) -> str:
    """The fence as run in a test: the quick start's ports replaced, nothing else."""
    body = re.sub(r"\b8080\b", str(relay_port), body)
    return re.sub(r"\b3000\b", str(app_port), body)
