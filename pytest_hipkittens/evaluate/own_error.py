"""Is a failed compile the candidate's own error, which the file as written would give too?

The nvcc wrapper (nvcc.py) tries faster routes before the file as written: the split build
and the lean header. Both differ from the file as written only by what they leave out —
the lean header declares less than ``torch/extension.h``, the split's device half has no
torch at all and each half lacks the other's code — so an error either reports may be the
route's own: a name the full header or the other half would have declared (a kernel using
``FLT_MAX``, which only torch's headers brought in, fails in the device half and compiles
as written). A route that fails that way must go on to the next, or a valid candidate
becomes a compile error. A genuine error, though, should be reported by the first route
that shows it instead of being compiled three times.

The rule (:func:`proven`): a failed route's errors are the candidate's own when

* every error the route's compilers report is a failed name lookup — nvcc's ``identifier
  "X" is undefined`` and ``… has no member "X"``, gcc's ``'X' was not declared in this
  scope``, ``'X' is not a member of …`` and ``… has no member named 'X'`` — the kind of
  error a missing declaration causes, and which names what is missing;
* each lies in the candidate's own file (the split's halves carry ``#line`` directives back
  to it), and none was met while instantiating a template (as written, overload resolution
  could pick a function from the full header and never instantiate it);
* the file as written, run through the preprocessor with the compile's own flags and the
  full ``torch/extension.h`` (``nvcc -E``: ~2-3 s, no compile), has X on each of those lines
  as many times as it was reported there and on no other line, and no header it reaches has
  X anywhere in its text (every ``#if`` branch; macro names included), nor does any other
  line of the candidate's file, comments and strings aside. (Both compilers report an
  undeclared name once per function, so a name used twice in a function proves nothing:
  the other use might have been its declaration.)

Then nothing the compile as written sees declares X, so it fails as well: the route's log,
which names the candidate's own file and lines, is the one reported. Every error of the
route must pass, so that log holds no error of the route's making. Anything else — other
messages, errors in headers, a file that does not preprocess, a name found anywhere it is
not used — goes on to the next route as before. The cost of a wrong "no" is the time of the
compiles the rule would have saved; there is no wrong "yes" short of an identifier that
only a header reached in nvcc's device pass alone declares (the preprocessor runs the host
pass; the raw text check covers every branch of each header it reaches).
"""

from __future__ import annotations

import bisect
import os
import re
import subprocess
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from .schema import first_error

#: nvcc's (EDG's) error lines: ``file(12): error: message``
_EDG = re.compile(r"^(?P<file>.+?)\((?P<line>\d+)\): (?:catastrophic )?error: (?P<msg>.*)$")
#: gcc's: ``file:12:5: error: message``
_GCC = re.compile(r"^(?P<file>.+?):(?P<line>\d+):(?:\d+:)? (?:fatal )?error: (?P<msg>.*)$")
_Q = "['\u2018\u2019]"  # gcc quotes names '…' in the C locale and ‘…’ in a UTF-8 one
_MEAN = rf"(?:; did you mean {_Q}[^'\u2018\u2019]*{_Q}\?)?"
#: failed lookups, each naming the missing name in its group 1
LOOKUP = (
    re.compile(r'^identifier "(\w+)" is undefined$'),
    re.compile(
        r'^(?:class|struct|union|namespace|enum)(?: template)? "[^"]*" has no member "(\w+)"$'
    ),
    re.compile(rf"^{_Q}(\w+){_Q} was not declared in this scope{_MEAN}$"),
    re.compile(rf"^{_Q}(\w+){_Q} is not a member of {_Q}[^'\u2018\u2019]*{_Q}{_MEAN}$"),
    re.compile(rf"^{_Q}[^'\u2018\u2019]*{_Q} has no member named {_Q}(\w+){_Q}{_MEAN}$"),
)
#: a template's instantiation context, in either compiler's words
_INSTANTIATION = re.compile(r"detected during|instantiation of|required from|required by")
#: lines that mention an error without being one (nvcc's closing count)
_ERROR_COUNT = re.compile(r"^\d+ errors? detected in the compilation of ")
#: gcc's line markers, ``# 12 "file" 2 3``, to the end of their line
_MARKER = re.compile(r'^# (\d+) "((?:[^"\\]|\\.)*)"[^\n]*', re.M)
#: the raw text of the headers the file reaches is read up to this much (then: no proof)
MAX_HEADER_BYTES = 512 * 1024 * 1024


@dataclass
class Lookups:
    """The failed lookups of a compile log: name -> source line -> how many reports."""

    lines: dict[str, Counter[int]] = field(default_factory=dict)
    #: the first error line, for the record
    first: str = ""


def _same_file(reported: str, source: Path) -> bool:
    if os.path.abspath(reported) == os.path.abspath(source):
        return True
    try:
        return os.path.samefile(reported, source)
    except OSError:
        return False


def lookups(log: str, source: Path) -> Lookups | None:
    """The failed lookups of a failed compile's ``log``, when every error in it is one,
    in ``source``, outside any template instantiation; else None."""
    if _INSTANTIATION.search(log):
        return None
    found = Lookups()
    for raw in log.splitlines():
        line = raw.strip()
        if not re.search(r"\berror\s*:", line, re.I) or _ERROR_COUNT.match(line):
            continue
        m = _EDG.match(line) or _GCC.match(line)
        if m is None or not _same_file(m.group("file"), source):
            return None
        msg = m.group("msg").strip()
        name = next((g.group(1) for p in LOOKUP if (g := p.match(msg))), None)
        if name is None:
            return None
        found.lines.setdefault(name, Counter())[int(m.group("line"))] += 1
        found.first = found.first or line
    return found if found.lines else None


def _code_only(text: str) -> str:
    """``text`` with comments and string/char literals blanked (newlines kept); the text as
    it is when it cannot be scanned (more occurrences: never a wrong proof)."""
    from .splitcu import Refused, _code_only

    try:
        return _code_only(text)
    except Refused:
        return text


def _lines_with(text: str, name: str) -> list[int]:
    """1-based lines of ``text`` on which ``name`` occurs as a word."""
    return [text.count("\n", 0, m.start()) + 1 for m in re.finditer(rf"(?<!\w){name}(?!\w)", text)]


def _unescape(name: str) -> str:
    return re.sub(r"\\(.)", r"\1", name)


def proven(found: Lookups, source: Path, preprocessed: str) -> bool:
    """The rule of this module's docstring, given the file as written preprocessed."""
    markers = [
        (m.start(), m.end(), int(m.group(1)), _unescape(m.group(2)))
        for m in _MARKER.finditer(preprocessed)
    ]
    if not markers:
        return False
    starts = [m[0] for m in markers]
    files = {f for *_, f in markers if not f.startswith("<")}
    headers = [f for f in files if not _same_file(f, source)]
    if len(headers) == len(files):
        return False  # the source itself is not in the preprocessed text
    own = {f for f in files if f not in headers}
    try:
        code = _code_only(source.read_text(encoding="utf-8", errors="replace"))
    except OSError:
        return False
    for name, lines in found.lines.items():
        seen: Counter[int] = Counter()
        for m in re.finditer(rf"(?<!\w){name}(?!\w)", preprocessed):
            k = bisect.bisect_right(starts, m.start()) - 1
            if k < 0:
                return False
            _, end, first, where = markers[k]
            if where not in own:
                return False  # expanded from, or written in, something other than the source
            seen[first + preprocessed.count("\n", end + 1, m.start())] += 1
        # As often on each line as reported there, and nowhere else: one more occurrence
        # could be its declaration (which a split may have moved off a shared line).
        if seen != lines or not set(_lines_with(code, name)) <= set(lines):
            return False
    names = [n.encode() for n in found.lines]
    total = 0
    for header in headers:
        try:
            data = Path(header).read_bytes()
        except OSError:
            return False
        total += len(data)
        if total > MAX_HEADER_BYTES or any(n in data for n in names):
            return False
    return True


#: nvcc flags that make outputs beside the object (and their argument, when they take one)
_OUTPUT_WITH_ARG = {"-o", "--output-file", "--dependency-output", "-MF", "-MT"}
_OUTPUT_FLAGS = {"-c", "--generate-dependencies-with-compile", "-MD", "-MMD"}


def preprocess_command(real: str, args: list[str]) -> list[str]:
    """nvcc's command line preprocessing the file of compile ``args`` as written, to stdout."""
    out: list[str] = [real]
    it = iter(args)
    for arg in it:
        if arg in _OUTPUT_WITH_ARG:
            next(it, None)
        elif arg not in _OUTPUT_FLAGS and not arg.startswith(
            tuple(f"{f}=" for f in _OUTPUT_WITH_ARG)
        ):
            out.append(arg)
    return [*out, "-E"]


class Judge:
    """Decides for one ``.cu`` compile whether a failed route's log is the candidate's own
    error; preprocesses the file as written at most once, and only when a log could be."""

    def __init__(self, real: str, args: list[str], source: Path, timeout_s: float = 300) -> None:
        self.real, self.args, self.source, self.timeout_s = real, args, source, timeout_s
        self._preprocessed: str | None = None
        self._failed = False

    def preprocessed(self) -> str | None:
        if self._preprocessed is None and not self._failed:
            try:
                out = subprocess.run(
                    preprocess_command(self.real, self.args),
                    capture_output=True,
                    timeout=self.timeout_s,
                )
            except (OSError, subprocess.SubprocessError):
                out = None
            if out is None or out.returncode:
                self._failed = True
            else:
                self._preprocessed = out.stdout.decode("utf-8", errors="replace")
        return self._preprocessed

    def own(self, *logs: str) -> str | None:
        """The first error line when every error of ``logs`` (one per failed compiler of a
        route) is proven the candidate's own; None when any is not or may not be."""
        merged = Lookups()
        for log in logs:
            found = lookups(log, self.source)
            if found is None:
                return None
            for name, lines in found.lines.items():
                merged.lines[name] = merged.lines.get(name, Counter()) | lines  # per line: max
            merged.first = merged.first or found.first
        if not merged.lines:
            return None
        text = self.preprocessed()
        if text is None or not proven(merged, self.source, text):
            return None
        return first_error(merged.first) or merged.first
