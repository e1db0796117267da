"""Every relative link in README.md and docs/*.md reaches a file, and a heading if it names one."""

from __future__ import annotations

from pathlib import Path

import pytest

from .markdown import ROOT, Link, anchors, name, pages, relative_links, slug

LINKS = [link for page in pages() for link in relative_links(page)]


def resolve(link: Link) -> tuple[Path, str]:
    path, _, anchor = link.target.partition("#")
    target = (link.path.parent / path).resolve() if path else link.path
    return target, anchor


@pytest.mark.parametrize("link", LINKS, ids=str)
def test_the_link_reaches_its_file_and_heading(link: Link) -> None:
    target, anchor = resolve(link)
    assert target.exists(), f"{link}: no file {target}"
    assert target.is_relative_to(ROOT), f"{link}: outside the repository"
    if anchor:
        assert target.suffix == ".md", f"{link}: an anchor in a file that is not markdown"
        assert anchor in anchors(target), f"{link}: no heading #{anchor} in {name(target)}"


def test_every_docs_page_is_linked_from_the_readme() -> None:
    readme = {resolve(link)[0] for link in LINKS if name(link.path) == "README.md"}
    unlinked = [name(page) for page in pages()[1:] if page not in readme]
    assert not unlinked, f"docs pages the README does not list: {unlinked}"


def test_anchors_follow_githubs_rule() -> None:
    assert slug("What check --deploy still says") == "what-check---deploy-still-says"
    assert slug("The `lt` client") == "the-lt-client"
    assert slug("Cookies: a tunnel cannot sign you out, or in as someone else") == (
        "cookies-a-tunnel-cannot-sign-you-out-or-in-as-someone-else"
    )


def test_the_rule_finds_links_and_refuses_a_broken_one(tmp_path: Path) -> None:
    assert any(link.target.startswith("docs/") for link in LINKS), LINKS
    page = tmp_path / "page.md"
    page.write_text("# Title\n\n[a](#title) [b](#nowhere) [c](https://example.com) `[d](x)`\n")
    targets = [link.target for link in relative_links(page)]
    assert targets == ["#title", "#nowhere"], targets
    assert anchors(page) == {"title"}
