"""DCMTK's generic configuration-file reader (OFConfigFile), as ``-xf`` files need it.

A byte-faithful re-implementation of the tokenizer's rules (SPEC §14.1), kept apart from the
meaning of the asconfig supersections (:mod:`storescpd.asconfig`). Pure: stdlib only, no I/O.
"""

from __future__ import annotations

from collections.abc import Iterator

Section = tuple[str, list[tuple[str, str]]]
Tree = list[tuple[str, list[Section]]]


def read_tree(text: str) -> Tree:
    """Split the text into ``[[supersections]]`` of ``[sections]`` of ``KEY = value`` entries.

    Sections outside a supersection and entries outside a section are dropped, as DCMTK does.
    """
    reader = _Reader(text)
    tree: Tree = []
    current: list[tuple[str, str]] | None = None
    for level, key, value in reader.entries():
        if level == 2:
            tree.append((key, []))
            current = None
        elif level == 1:
            if tree:
                current = []
                tree[-1][1].append((key, current))
            else:
                current = None
        elif current is not None:
            current.append((key, value))
    return tree


class _Reader:
    """DCMTK's tokenizer, character by character.

    ``#`` starts a comment only in the first column; CR, LF and CRLF end lines; keys and
    section names keep only ``A-Z 0-9 - _`` after upper-casing ``a-z``; blanks and line ends
    between key characters are skipped; a value runs on over lines that start with a blank.
    """

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0
        self.pushed: list[str] = []
        self.eof = False
        self.at_line_start = True
        self.after_cr = False

    def _getc(self) -> str:
        if self.pushed:
            return self.pushed.pop()
        if self.pos >= len(self.text):
            self.eof = True
            return ""
        self.pos += 1
        return self.text[self.pos - 1]

    def _char(self) -> str:
        """One character with comments removed and every line end turned into LF."""
        comment = False
        while True:
            c = self._getc()
            if self.eof:
                return c
            if c == "\n" and self.after_cr and self.at_line_start:
                self.after_cr = False
                continue
            if c in "\r\n":
                self.at_line_start = True
                self.after_cr = c == "\r"
                if comment:
                    comment = False
                    continue
                return "\n"
            if c == "#" and self.at_line_start:
                comment = True
                self.at_line_start = False
                continue
            if not comment:
                self.at_line_start = False
                return " " if c == "\0" else c

    def _key_char(self) -> str:
        c = ""
        while not self.eof:
            c = self._char()
            if c not in (" ", "\t", "\n"):
                break
        return c.upper() if "a" <= c <= "z" else c

    def entries(self) -> Iterator[tuple[int, str, str]]:
        while not self.eof:
            c = self._key_char()
            if self.eof:
                return
            if c == "[":
                level, name = self._header()
                yield level, name, ""
            else:
                self.pushed.append(c)
                key = self._name(until="=")
                yield 0, key, self._value()

    def _header(self) -> tuple[int, str]:
        level = 1
        c = self._key_char()
        while not self.eof and c == "[":
            level += 1
            c = self._key_char()
        if self.eof:
            return min(level, 2), ""
        self.pushed.append(c)
        name = self._name(until="]")
        closing = level - 1
        while closing and not self.eof:
            if self._key_char() == "]" and not self.eof:
                closing -= 1
        return min(level, 2), name

    def _name(self, until: str) -> str:
        name: list[str] = []
        while True:
            c = self._key_char()
            if self.eof or c == until:
                return "".join(name)
            if c.isascii() and (c.isupper() or c.isdigit() or c in "-_"):
                name.append(c)

    def _value(self) -> str:
        value: list[str] = []
        skip_blanks = True
        after_newline = False
        while True:
            c = self._char()
            if self.eof:
                break
            if c == "\n":
                if not skip_blanks:
                    value.append(c)
                skip_blanks = after_newline = True
            elif c in " \t":
                after_newline = False
                if not skip_blanks:
                    value.append(c)
            elif after_newline:
                self.pushed.append(c)
                break
            else:
                value.append(c)
                skip_blanks = False
        return "".join(value).rstrip("\n")
