"""The manual pages ``man/storescpd.8`` and ``man/storescpd-dcmrecv.8``: complete, up to date
with their option tables, lint-clean.

``mandoc`` and ``groff`` are run for real; a missing one fails the test under ``CI=true`` and
skips it elsewhere.
"""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from storescpd.options import OPTIONS, Opt
from storescpd.recvoptions import OPTIONS_DCMRECV
from tests.conftest import require_tool

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "man" / "storescpd.8"
DCMRECV_PAGE = ROOT / "man" / "storescpd-dcmrecv.8"
GENERATOR = ROOT / "man" / "generate.py"
PAGES = [(PAGE, OPTIONS), (DCMRECV_PAGE, OPTIONS_DCMRECV)]
PAGE_IDS = [page.name for page, _ in PAGES]


def load_generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("man_generate", GENERATOR)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def tool(name: str) -> str:
    return require_tool(name)


def page_text(page: Path = PAGE) -> str:
    """The page source with roff's font changes, hyphen and backslash escapes undone."""
    text = re.sub(r"\\f[BIRP]", "", page.read_text(encoding="utf-8"))
    return text.replace("\\-", "-").replace("\\e", "\\")


@pytest.mark.parametrize(
    ("page", "name"),
    [(page, n) for page, table in PAGES for o in table for n in (o.short, o.long) if n],
)
def test_every_option_name_is_in_the_page(page: Path, name: str) -> None:
    assert re.search(rf"(?<![\w+-]){re.escape(name)}(?![\w-])", page_text(page)), name


@pytest.mark.parametrize(
    ("page", "option"),
    [(page, o) for page, table in PAGES for o in table if o.later],
    ids=lambda v: v.name if isinstance(v, Path) else v.long,
)
def test_unsupported_options_say_so(page: Path, option: Opt) -> None:
    text = page_text(page)
    tag = re.search(rf"^\.TP\n.*{re.escape(option.long)}(?![\w-])", text, re.MULTILINE)
    assert tag is not None
    entry = tag.string[tag.end() :].split(".TP\n", 1)[0]
    assert "Not supported yet" in entry


@pytest.mark.parametrize(
    "section",
    ["NAME", "SYNOPSIS", "DESCRIPTION", "PARAMETERS", "OPTIONS", "PROCESS MODES", "FILE NAMES",
     "STATUSES", "SIGNALS", "EXIT STATUS", "ENVIRONMENT", "FILES", "EXAMPLES", "SEE ALSO"],
)  # fmt: skip
def test_section_is_present(section: str) -> None:
    assert re.search(rf"^\.SH {re.escape(section)}$", PAGE.read_text(), re.MULTILINE)


@pytest.mark.parametrize(
    "section",
    ["NAME", "SYNOPSIS", "DESCRIPTION", "PARAMETERS", "OPTIONS", "FILE NAMES", "EXIT STATUS",
     "SEE ALSO"],
)  # fmt: skip
def test_dcmrecv_section_is_present(section: str) -> None:
    assert re.search(rf"^\.SH {re.escape(section)}$", DCMRECV_PAGE.read_text(), re.MULTILINE)


@pytest.mark.parametrize("status", ["0", "1", "45", "64", "66", "71"])
def test_dcmrecv_exit_statuses_are_documented(status: str) -> None:
    section = DCMRECV_PAGE.read_text().split(".SH EXIT STATUS\n", 1)[1].split(".SH ", 1)[0]
    assert f".TP\n.B {status}\n" in section


@pytest.mark.parametrize(("page", "table"), PAGES, ids=PAGE_IDS)
def test_generator_changes_nothing(page: Path, table: tuple[Opt, ...]) -> None:
    text = page.read_text(encoding="utf-8")
    assert load_generator().render(text, table) == text, "run: python man/generate.py"


def test_the_two_pages_differ_in_their_options() -> None:
    generate = load_generator()
    ours = "\n".join(generate.options_section(OPTIONS_DCMRECV))
    assert "\\-\\-short\\-unique\\-names" in ours and "\\-\\-fork" not in ours


def test_generator_check_passes_and_sees_a_stale_page() -> None:
    generate = load_generator()
    stale = generate.render(PAGE.read_text()).replace("\\-\\-aetitle", "\\-\\-ae")
    assert generate.render(stale) != stale
    result = subprocess.run([sys.executable, str(GENERATOR), "--check"], capture_output=True,
                            text=True, check=False, timeout=60)  # fmt: skip
    assert (result.returncode, result.stderr) == (0, "")


@pytest.mark.parametrize(
    ("text", "roff"),
    [
        ("--aetitle", "\\-\\-aetitle"),
        ("a\\b", "a\\eb"),
        (".starts with a dot", "\\&.starts with a dot"),
        ("'quote first", "\\&'quote first"),
        ("plain", "plain"),
    ],
)
def test_escape(text: str, roff: str) -> None:
    assert load_generator().escape(text) == roff


@pytest.mark.parametrize(
    ("value_help", "letters"),
    [
        ("[f]ilename, [p]rofile: string", ["f", "p"]),
        ("[n]umber: integer (default: --workers)", ["n"]),
        ("[f]ile-pad [i]tem-pad: integer", ["f", "i"]),
        ("", []),
    ],
)
def test_placeholders(value_help: str, letters: list[str]) -> None:
    assert load_generator().placeholders(value_help) == letters


@pytest.mark.parametrize("page", [page for page, _ in PAGES], ids=PAGE_IDS)
def test_mandoc_lint_is_silent(page: Path) -> None:
    result = subprocess.run([tool("mandoc"), "-Tlint", "-W", "warning", str(page)],
                            capture_output=True, text=True, check=False, timeout=60)  # fmt: skip
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")


@pytest.mark.parametrize("page", [page for page, _ in PAGES], ids=PAGE_IDS)
def test_groff_is_silent(page: Path) -> None:
    result = subprocess.run([tool("groff"), "-man", "-ww", "-z", str(page)],
                            capture_output=True, text=True, check=False, timeout=60)  # fmt: skip
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")


def test_mandoc_lint_catches_a_broken_page(tmp_path: Path) -> None:
    broken = tmp_path / "broken.8"
    broken.write_text(PAGE.read_text().replace(".SH SYNOPSIS", ".BX SYNOPSIS"))
    result = subprocess.run([tool("mandoc"), "-Tlint", "-W", "warning", str(broken)],
                            capture_output=True, text=True, check=False, timeout=60)  # fmt: skip
    assert result.returncode != 0 and result.stdout + result.stderr
