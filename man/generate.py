"""Write the OPTIONS sections of ``man/storescpd.8`` and ``man/storescpd-dcmrecv.8`` from
their option tables.

The manuals' prose is hand-written; only the lines between the two marker comments are
generated, so the option lists cannot drift from ``storescpd --help`` and
``storescpd-dcmrecv --help``. Run it from anywhere: ``python man/generate.py`` rewrites the
pages in place; ``--check`` only reports (exit 1) when a page is out of date.
"""

from __future__ import annotations

import re
import sys
import textwrap
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from storescpd.options import OPTIONS, Group, Opt
from storescpd.recvoptions import OPTIONS_DCMRECV

PAGE = Path(__file__).resolve().parent / "storescpd.8"
DCMRECV_PAGE = Path(__file__).resolve().parent / "storescpd-dcmrecv.8"
PAGES: tuple[tuple[Path, tuple[Opt, ...]], ...] = ((PAGE, OPTIONS), (DCMRECV_PAGE, OPTIONS_DCMRECV))
BEGIN = '.\\" BEGIN GENERATED OPTIONS (man/generate.py)'
END = '.\\" END GENERATED OPTIONS'
LATER = (
    "Not supported yet: accepted and checked, but storescpd refuses to start",
    "(exit status 1) when it would take effect.",
)


def escape(text: str) -> str:
    """Roff-escape free text: backslashes and hyphens, and a leading control character."""
    text = text.replace("\\", "\\e").replace("-", "\\-")
    return "\\&" + text if text[:1] in (".", "'") else text


def placeholders(value_help: str) -> list[str]:
    """The value letters of ``[f]ilename, [p]rofile: string``, i.e. ``f`` and ``p``."""
    return re.findall(r"\[(\w)\]", value_help.split(":")[0])


def tag(option: Opt) -> str:
    names = [f"\\fB{escape(n)}\\fR" for n in (option.short, option.long) if n]
    values = " ".join(f"\\fI{letter}\\fR" for letter in placeholders(option.value_help))
    return ", ".join(names) + (" " + values if values else "")


def entry(option: Opt) -> list[str]:
    lines = [".TP", tag(option)]
    if option.value_help:
        lines += [escape(option.value_help), ".br"]
    lines += [escape(line) for line in textwrap.wrap(option.help, 78, break_on_hyphens=False)]
    if option.later:
        lines += [".br", *LATER]
    return lines


def heading(title: str) -> str:
    return title.rstrip(":").capitalize()


def options_section(table: tuple[Opt, ...] = OPTIONS) -> list[str]:
    """The roff lines of the OPTIONS section, grouped as ``--help`` groups them."""
    lines = [".SH OPTIONS"]
    group: Group = ("", "")
    for option in table:
        if option.group != group:
            new_section = option.group[0] != group[0]
            if new_section:
                lines.append(f'.SS "{escape(heading(option.group[0]))}"')
            if option.group[1]:
                # mandoc warns about a paragraph macro right after .SS
                lines += [] if new_section else [".PP"]
                lines.append(f"\\fI{escape(heading(option.group[1]))}\\fR")
            group = option.group
        lines += entry(option)
    return lines


def render(page: str, table: tuple[Opt, ...] = OPTIONS) -> str:
    """``page`` with everything between the markers replaced by the generated section."""
    head, found, rest = page.partition(BEGIN + "\n")
    _, found_end, tail = rest.partition(END + "\n")
    if not (found and found_end):
        raise SystemExit("marker comments not found")
    section = "\n".join(options_section(table))
    return head + BEGIN + "\n" + section + "\n" + END + "\n" + tail


def main(argv: list[str]) -> int:
    status = 0
    for path, table in PAGES:
        old = path.read_text(encoding="utf-8")
        new = render(old, table)
        if "--check" in argv:
            if new != old:
                print(f"{path} is out of date: run python man/generate.py", file=sys.stderr)
                status = 1
        elif new != old:
            path.write_text(new, encoding="utf-8")
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
