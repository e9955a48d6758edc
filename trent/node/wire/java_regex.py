"""Java regular expressions (as the AWS service model writes its patterns) translated to Python's ``re``.

A construct with no faithful translation leaves the pattern unenforced rather than enforced wrongly.
"""

from __future__ import annotations

import re
import warnings
from types import MappingProxyType

_JAVA_DOT = r"[^\n\r\x85\u2028\u2029]"

# Java's POSIX character classes (US-ASCII only, as without UNICODE_CHARACTER_CLASS), as class bodies.
_JAVA_POSIX_CLASSES = MappingProxyType(
    {
        "Lower": "a-z",
        "Upper": "A-Z",
        "ASCII": r"\x00-\x7F",
        "Alpha": "a-zA-Z",
        "Digit": "0-9",
        "Alnum": "a-zA-Z0-9",
        "Punct": r"!-/:-@\[-`{-~",
        "Graph": "!-~",
        "Print": " -~",
        "Blank": r" \t",
        "Cntrl": r"\x00-\x1F\x7F",
        "XDigit": "0-9a-fA-F",
        "Space": r" \t\n\x0B\f\r",
    }
)


# Java escapes whose Python meaning differs or is missing; a pattern using them is not translated.
_UNTRANSLATABLE_ESCAPES = frozenset("ZhHvVRXGkN")


def translate_java_regex(pattern: str) -> re.Pattern[str] | None:
    """Compile a model (Java) regex to an equivalent Python one, or None if it uses unsupported syntax.

    The KMS model's patterns are plain: character classes, ``\\uXXXX`` escapes, ``\\w \\d \\s``, groups,
    alternation, bounded repeats, ``.``. ``re.ASCII`` gives ``\\w \\d \\s \\b`` Java's default ASCII meaning;
    ``.`` and ``\\p{Posix}`` classes are rewritten; Java-only syntax (nested classes, ``&&``, ``\\p{L}``...)
    yields None so the caller can skip the check rather than enforce a wrong one.
    """
    out: list[str] = []
    in_class = False
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        if c == "\\":
            if i + 1 >= n:
                return None
            e = pattern[i + 1]
            if e in "pP":
                if pattern.startswith("{", i + 2):
                    end = pattern.find("}", i + 3)
                    if end < 0:
                        return None
                    name, i = pattern[i + 3 : end], end + 1
                else:
                    name, i = pattern[i + 2 : i + 3], i + 3
                body = _JAVA_POSIX_CLASSES.get(name)
                if body is None or (in_class and e == "P"):
                    return None
                out.append(body if in_class else f"[{'^' if e == 'P' else ''}{body}]")
                continue
            if e == "Q":  # \Q...\E quotes a literal run
                end = pattern.find("\\E", i + 2)
                literal = pattern[i + 2 :] if end < 0 else pattern[i + 2 : end]
                out.append(re.escape(literal))
                i = n if end < 0 else end + 2
                continue
            if e in _UNTRANSLATABLE_ESCAPES or (e == "x" and pattern.startswith("{", i + 2)):
                return None
            out.append("\\Z" if e == "z" else pattern[i : i + 2])
            i += 2
            continue
        if in_class:
            if c == "[" or pattern.startswith("&&", i):  # Java class union / intersection
                return None
            in_class = c != "]"
            out.append(c)
            i += 1
            continue
        if c == "[":
            in_class = True
            out.append(c)
            i += 1
            if pattern.startswith("^", i):
                out.append("^")
                i += 1
            continue
        out.append(_JAVA_DOT if c == "." else c)
        i += 1
    if in_class:
        return None
    try:
        with warnings.catch_warnings():
            # Python warns (FutureWarning) on class syntax whose meaning may change, e.g. "--": not Java's.
            warnings.simplefilter("error")
            return re.compile("".join(out), re.ASCII)
    except (re.error, FutureWarning):
        return None
