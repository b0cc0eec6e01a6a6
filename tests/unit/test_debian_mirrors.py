from __future__ import annotations

from pathlib import Path

from ops.images.debian import host_mirrors


def _apt(tmp_path: Path, deb822: str = "", one_line: str = "") -> Path:
    (tmp_path / "sources.list.d").mkdir()
    if deb822:
        (tmp_path / "sources.list.d" / "debian.sources").write_text(deb822)
    if one_line:
        (tmp_path / "sources.list").write_text(one_line)
    return tmp_path


def test_deb822_sources_give_archive_and_security(tmp_path: Path) -> None:
    apt = _apt(
        tmp_path,
        deb822=(
            "Types: deb\n# a comment\nURIs: http://ftp.cn.debian.org/debian/\n"
            "Suites: bookworm bookworm-updates\nComponents: main\n\n"
            "Types: deb\nURIs: http://security.debian.org/debian-security\n"
            "Suites: bookworm-security\nComponents: main\n"
        ),
    )
    mirrors = host_mirrors(apt_dir=apt)
    assert mirrors.archive == "http://ftp.cn.debian.org/debian"
    assert mirrors.sources("trixie") == [
        "deb http://ftp.cn.debian.org/debian trixie main",
        "deb http://ftp.cn.debian.org/debian trixie-updates main",
        "deb http://security.debian.org/debian-security trixie-security main",
    ]


def test_one_line_sources_and_override(tmp_path: Path) -> None:
    apt = _apt(
        tmp_path,
        one_line=(
            "# deb http://ignored/debian bookworm main\n"
            "deb [signed-by=/k.gpg] http://mirrors.tuna.tsinghua.edu.cn/debian bookworm main\n"
        ),
    )
    assert host_mirrors(apt_dir=apt).archive == "http://mirrors.tuna.tsinghua.edu.cn/debian"
    assert host_mirrors(apt_dir=apt).security is None
    override = host_mirrors("http://mirrors.ustc.edu.cn/debian/", apt_dir=apt)
    assert override.archive == "http://mirrors.ustc.edu.cn/debian"


def test_disabled_sources_are_ignored_and_fallback_applies(tmp_path: Path) -> None:
    apt = _apt(tmp_path, deb822="Enabled: no\nTypes: deb\nURIs: http://x/debian\nSuites: a\n")
    assert host_mirrors(apt_dir=apt).archive == "http://deb.debian.org/debian"
