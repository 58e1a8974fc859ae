"""Split a CUDA source into a torch-free device file and a host file.

A ``load_inline`` kernel file mixes two things: kernels (device code: a few dozen lines
that need ``cuda_runtime.h``) and the torch glue that launches them (host code that needs
ATen). nvcc parses the whole file, ATen included, three times — ~30 s even with a lean
header — although no kernel touches a tensor. Split, the kernels compile with nvcc in
~1-3 s and the glue with the host compiler against a precompiled header in ~2-4 s, in
parallel.

The split moves code, it does not rewrite what it computes. Kernels, ``__device__``
functions and the types they use go to ``device.cu`` exactly as written; host functions
go to ``host.cpp`` exactly as written, except that each launch
``k<<<grid, block, smem, stream>>>(args)`` becomes the expression nvcc itself lowers it
to, ``(__cudaPushCallConfiguration(grid, block, smem, stream)) ? (void)0 : k(args)``, with
``k`` reached through a function pointer exported by the device object (nvcc gives kernel
stubs internal or hidden linkage, so a declaration would not link). Arguments are still
converted to the kernel's parameter types by that call.

A kernel template gets a pointer variable template; the host file launches
``k<float, 256>`` through ``ptr<float, 256>``, and once the host object is compiled its
undefined symbols say which instantiations the device file must provide
(:func:`instantiations`), so the kernels compiled are exactly those the host launches.

Anything this scanner is not sure about — conditional preprocessing around declarations,
kernel templates launched without spelled-out arguments, device symbols the host code
names, unbalanced text — is refused with a reason; the caller then compiles the file as
written. A split that does not compile is also discarded by the caller, so a wrong guess
costs seconds, never a different program.

Given the source's file name, every piece copied from it is preceded by a ``#line``
directive naming its line there: a compiler error in either half (and ``__LINE__``,
``__FILE__``, debug line info) points at the candidate's own file and line, which is what
the wrapper's rule for the candidate's own errors (own_error.py) reads.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field

CUDA_DEVICE_WORDS = ("__device__", "__constant__", "__shared__", "__managed__", "__host__")
#: host-side references to torch, pybind11 and Python: such code goes to the host file.
_TORCH = re.compile(
    r"\b(?:torch|at|c10|caffe2|pybind11|py)\s*::|\b(?:TORCH|AT|C10|PYBIND11|THC)_\w+|\bTensor\b"
    r"|\bPyObject\b|\bnamespace\s+(?:torch|at|c10|pybind11)\b|=\s*(?:pybind11|torch)\b"
)
_TORCH_INCLUDE = re.compile(r"^(?:torch|ATen|c10|caffe2|pybind11|THC)/|^Python\.h$")
#: headers that only nvcc can compile; the host file leaves them out.
_DEVICE_LIBS = "cub|thrust|cuda|cute|cutlass|cooperative_groups"
_DEVICE_ONLY_INCLUDE = re.compile(
    rf"^(?:{_DEVICE_LIBS}|crt)/"
    r"|^(?:mma|cooperative_groups|cuda_pipeline\w*|cuda_awbarrier\w*|sm_\w+|device_\w+)\.h$"
)
#: namespaces of device-only headers; aliases and using-directives of them stay on the device side.
_DEVICE_NAMESPACE = re.compile(rf"(?:::)?(?:{_DEVICE_LIBS}|nvcuda)\b")
_NAMESPACE_ALIAS = re.compile(r"\s*(?:namespace\s+\w+\s*=|using\s+namespace)\s*([\w:]+)\s*;\s*$")
_IDENT = re.compile(r"[A-Za-z_]\w*")
_PP_OK = ("include", "define", "undef", "pragma")
_TYPE_START = re.compile(
    r"^(?:template\s*<.*?>\s*)?(?:struct|class|union|enum|typedef|using)\b", re.S
)
_KERNEL_SPEC = re.compile(
    r"\b(?:__launch_bounds__|__maxnreg__|__cluster_dims__|__grid_constant__)\b"
)


class Refused(Exception):
    """The source is outside what the split handles; compile it as written."""


@dataclass
class Kernel:
    name: str
    signature: str  # ``void name(params)`` without CUDA specifiers
    path: tuple[str, ...]  # enclosing namespaces
    pointer: str = ""
    #: a kernel template's parameters without defaults (``typename T, int B``) and their
    #: names (``T, B``); empty for a plain kernel.
    tparams: str = ""
    targs: str = ""


@dataclass
class Split:
    device: str
    host: str
    kernels: list[Kernel] = field(default_factory=list)


@dataclass
class _Chunk:
    text: str
    code: str  # ``text`` with comments and literals blanked
    kind: str  # "pp", "namespace", "code"
    inner: list[_Chunk] = field(default_factory=list)
    head: str = ""  # "namespace a::b" for namespaces
    kernel: Kernel | None = None  # the kernel a "code" chunk defines (set by _scan)
    line: int = 0  # the source line the chunk starts on (1-based)


# -- scanning -------------------------------------------------------------------------------
def _skip_literal(src: str, i: int) -> int:
    """Index after the string/char literal or comment starting at ``src[i]``."""
    c = src[i]
    if src.startswith("//", i):
        end = src.find("\n", i)
        return len(src) if end < 0 else end
    if src.startswith("/*", i):
        end = src.find("*/", i + 2)
        if end < 0:
            raise Refused("unterminated comment")
        return end + 2
    if c in "\"'":
        j = i + 1
        while j < len(src):
            if src[j] == "\\":
                j += 2
                continue
            if src[j] == c:
                return j + 1
            if src[j] == "\n":
                break
            j += 1
        raise Refused("unterminated literal")
    return i


def _code_only(src: str) -> str:
    """``src`` with comments and literal contents blanked (same length, newlines kept)."""
    out = []
    i = 0
    while i < len(src):
        c = src[i]
        starts_comment = c == "/" and src.startswith(("//", "/*"), i)
        digit_separator = c == "'" and i > 0 and src[i - 1].isalnum()
        if (c == '"' or c == "'") and not digit_separator or starts_comment:
            j = _skip_literal(src, i)
            blank = re.sub(r"[^\n]", " ", src[i:j])
            out.append(blank if starts_comment else c + blank[2:] + c)
            i = j
            continue
        out.append(c)
        i += 1
    return "".join(out)


def _chunks(src: str, code: str, start: int, end: int) -> list[_Chunk]:
    """Top-level declarations of ``src[start:end]`` (``code`` is ``src`` with comments blank)."""
    chunks: list[_Chunk] = []
    i = start
    while i < end:
        while i < end and code[i].isspace():
            i += 1
        if i >= end:
            break
        if code[i] == "#":
            j = i
            while True:
                nl = code.find("\n", j)
                nl = end if nl < 0 or nl > end else nl
                if code[i:nl].rstrip().endswith("\\") and nl < end:
                    j = nl + 1
                    continue
                break
            chunks.append(_Chunk(src[i:nl], code[i:nl], "pp", line=_line_of(src, i)))
            i = nl
            continue
        m = re.match(r"namespace\s*([\w:]*)\s*\{", code[i:end])
        if m:
            if not m.group(1):
                raise Refused("anonymous namespace")
            close = _balanced(code, i + m.end() - 1, "{}", end)
            inner = _chunks(src, code, i + m.end(), close)
            chunks.append(
                _Chunk(
                    src[i : close + 1],
                    code[i : close + 1],
                    "namespace",
                    inner,
                    m.group(1),
                    line=_line_of(src, i),
                )
            )
            i = close + 1
            continue
        if code.startswith("extern", i) and re.match(r'extern\s*"C"\s*\{', code[i:end]):
            raise Refused('extern "C" block')
        j = i
        depth = 0
        while j < end:
            c = code[j]
            if c in "([":
                depth += 1
            elif c in ")]":
                depth -= 1
            elif c == "{":
                close = _balanced(code, j, "{}", end)
                head = code[i:j]
                j = close + 1
                if depth == 0 and not _TYPE_START.match(head.strip()) and not _assigns(head):
                    break  # a function body ends the declaration
                continue
            elif c == ";" and depth == 0:
                j += 1
                break
            elif c == "#" and (j == 0 or code[j - 1] == "\n") and depth == 0:
                raise Refused("preprocessor line inside a declaration")
            j += 1
        else:
            if code[i:end].strip():
                raise Refused("declaration without an end")
        chunks.append(_Chunk(src[i:j], code[i:j], "code", line=_line_of(src, i)))
        i = j
    return chunks


def _line_of(src: str, i: int) -> int:
    return src.count("\n", 0, i) + 1


def _assigns(head: str) -> bool:
    """``head`` has an ``=`` outside parentheses (an initialiser, not a default argument or
    a default template argument)."""
    end = _template_head_end(head)
    head = head[end:] if end >= 0 else ""
    head = re.sub(r"\boperator\s*[=!<>+\-*/%^&|]*=", "operator", head)
    depth = 0
    for c in head:
        depth += c in "(["
        depth -= c in ")]"
        if c == "=" and depth == 0:
            return True
    return False


def _template_head_end(head: str) -> int:
    """Index just after the ``template <...>`` that starts ``head`` (0: none, -1: unclosed)."""
    m = re.match(r"\s*template\s*<", head)
    if not m:
        return 0
    depth, j = 1, m.end()
    while j < len(head) and depth:
        depth += head[j] == "<"
        depth -= head[j] == ">"
        j += 1
    return -1 if depth else j


def _balanced(text: str, open_at: int, pair: str = "()", end: int | None = None) -> int:
    """Index of the ``pair[1]`` closing the ``pair[0]`` at ``open_at`` (before ``end``)."""
    depth = 0
    for j in range(open_at, len(text) if end is None else end):
        if text[j] == pair[0]:
            depth += 1
        elif text[j] == pair[1]:
            depth -= 1
            if depth == 0:
                return j
    raise Refused("unbalanced " + {"()": "parentheses", "{}": "braces"}.get(pair, pair))


# -- classification -------------------------------------------------------------------------
def _strip_specs(head: str) -> str:
    """A kernel's declaration without CUDA-only specifiers (``__launch_bounds__(..)`` …)."""
    out = head
    while True:
        m = _KERNEL_SPEC.search(out)
        if not m:
            break
        j = m.end()
        while j < len(out) and out[j].isspace():
            j += 1
        stop = _balanced(out, j) + 1 if j < len(out) and out[j] == "(" else m.end()
        out = out[: m.start()] + out[stop:]
    out = re.sub(
        r'\b(?:__global__|static|inline|__forceinline__|__noinline__|extern\s*"C")', "", out
    )
    return " ".join(out.split())


def _kernel(text: str, code: str, path: tuple[str, ...]) -> Kernel:
    body = code.find("{")
    if body < 0:
        raise Refused("kernel declared without a body")
    head = code[:body]
    tparams, targs = _template_params(head)
    sig_code = _strip_specs(head)
    close = sig_code.rfind(")")
    depth = 0
    open_at = -1
    for j in range(close, -1, -1):
        depth += sig_code[j] == ")"
        depth -= sig_code[j] == "("
        if depth == 0:
            open_at = j
            break
    names = _IDENT.findall(sig_code[: max(open_at, 0)])
    if close < 0 or open_at < 0 or not names:
        raise Refused("kernel without a name or parameter list")
    if "=" in sig_code[open_at:close]:
        raise Refused("kernel with default arguments")
    return Kernel(names[-1], _strip_specs(text[:body]), path, tparams=tparams, targs=targs)


def _split_top(text: str, sep: str = ",") -> list[str]:
    """``text`` split at ``sep`` outside ``<>``, ``()`` and ``[]``."""
    parts, depth, last = [], 0, 0
    for j, c in enumerate(text):
        depth += c in "<(["
        depth -= c in ">)]"
        if c == sep and depth == 0:
            parts.append(text[last:j])
            last = j + 1
    parts.append(text[last:])
    return [p for p in parts if p.strip()]


def _template_params(head: str) -> tuple[str, str]:
    """(parameters without defaults, their names) of a ``template <...>`` head, or ("", "")."""
    end = _template_head_end(head)
    if end < 0:
        raise Refused("kernel template parameter list")
    if not end:
        return "", ""
    decls, names = [], []
    for param in _split_top(head[head.index("<") + 1 : end - 1]):
        if "..." in param:
            raise Refused("kernel template with a parameter pack")
        param = _split_top(param, "=")[0].strip()
        ids = _IDENT.findall(param)
        if len(ids) < 2:
            raise Refused("kernel template parameter without a name")
        decls.append(param)
        names.append(ids[-1])
    return ", ".join(decls), ", ".join(names)


def instantiations(kernels: list[Kernel], symbols: list[str]) -> str:
    """Explicit instantiations of the kernel-template pointers the host object uses.

    ``symbols`` are the host object's undefined symbols, demangled (``ops::hk_kernel_…<float,
    256>``): each names one instantiation the device file must provide.
    """
    lines = []
    for k in kernels:
        if not k.tparams:
            continue
        pattern = re.compile(rf"^(?:[\w:]*::)?{re.escape(k.pointer)}<(.*)>$")
        for sym in symbols:
            m = pattern.match(sym.strip())
            if m:
                line = f"template decltype(&{k.name}<{m.group(1)}>) {k.pointer}<{m.group(1)}>;"
                for ns in reversed(k.path):
                    line = f"namespace {ns} {{ {line} }}"
                lines.append(line)
    return "\n".join(lines)


def _declared_name(code: str) -> str | None:
    """The name a device-only function or variable declaration introduces."""
    stop = len(code)
    for ch in "({=[;":
        k = code.find(ch)
        if 0 <= k < stop:
            stop = k
    names = [n for n in _IDENT.findall(code[:stop]) if not n.startswith("__")]
    return names[-1] if names and names[-1] != "operator" else None


def _type_name(code: str) -> str | None:
    m = re.search(
        r"\b(?:struct|class|union|enum(?:\s+class)?)\s+(?:__align__\s*\(\s*\d+\s*\)\s*)?(\w+)", code
    )
    if m:
        return m.group(1)
    m = re.match(r"\s*(?:template\s*<.*?>\s*)?using\s+(\w+)\s*=", code, re.S)
    if m:
        return m.group(1)
    m = re.search(r"(\w+)\s*;\s*$", code) if code.lstrip().startswith("typedef") else None
    return m.group(1) if m else None


def _is_shared(code: str) -> bool:
    """Declarations both files may hold without breaking the one-definition rule: types,
    constants, inline/constexpr/template functions, ``static_assert``, ``using``."""
    head = code.strip()
    if _TYPE_START.match(head) or re.match(r"static_assert\b", head):
        return True
    first = re.split(r"[{=]", head, maxsplit=1)[0]
    if re.search(r"\b(?:constexpr|inline|template)\b", first):
        return True
    return bool(re.search(r"\bconst\b", first)) and "(" not in first


def _both_sides(code: str) -> bool:
    """A ``__host__ __device__`` function both files may define (inline, constexpr or a
    template): host code may call it, e.g. a ``ceil_div`` in a launch configuration."""
    head = code.split("{", 1)[0]
    return (
        "__host__" in head
        and "__device__" in head
        and bool(re.search(r"\b(?:inline|__forceinline__|constexpr|template)\b", head))
    )


def _qualifier_ok(qualifier: str, k: Kernel) -> bool:
    """``ns::`` before a kernel's name names the kernel's own namespace (or none)."""
    parts = [p for p in re.sub(r"\s", "", qualifier).split("::") if p]
    return not parts or k.path[-len(parts) :] == tuple(parts)


@dataclass
class _Plan:
    """What the scan learnt before emitting: kernels, device-only names, host identifiers."""

    kernels: dict[str, Kernel] = field(default_factory=dict)
    device_names: set[str] = field(default_factory=set)
    host_words: set[str] = field(default_factory=set)
    #: the source's file name for ``#line`` directives (None: none are written)
    file: str | None = None

    def at(self, ch: _Chunk) -> str:
        """The ``#line`` directive that puts ``ch`` back at its line of the source."""
        if self.file is None or not ch.line:
            return ""
        name = self.file.replace("\\", "\\\\").replace('"', '\\"')
        return f'#line {ch.line} "{name}"\n'


def _is_host_code(code: str) -> bool:
    return "<<<" in code or bool(_TORCH.search(code))


def _scan(chunks: list[_Chunk], path: tuple[str, ...], plan: _Plan) -> None:
    for ch in chunks:
        if ch.kind == "namespace":
            _scan(ch.inner, (*path, ch.head), plan)
            continue
        if ch.kind != "code":
            continue
        code = ch.code
        if "__global__" in code and "{" not in code:
            continue  # a kernel's prototype: device side only, its definition comes later
        if "__global__" in code:
            k = ch.kernel = _kernel(ch.text, code, path)
            if k.name in plan.kernels:
                raise Refused(f"two kernels named {k.name}")
            plan.kernels[k.name] = k
        elif any(w in code for w in CUDA_DEVICE_WORDS):
            if _is_host_code(code):
                raise Refused("device code that uses torch or launches kernels")
            if _both_sides(code):
                continue
            if not _TYPE_START.match(code.strip()) and "__shared__" not in code:
                name = _declared_name(code)
                if name:
                    plan.device_names.add(name)
        elif _is_host_code(code) or not _is_shared(code):
            plan.host_words.update(_IDENT.findall(code))


def split(src: str, file: str | None = None) -> Split:
    """Split ``src`` or raise :class:`Refused`; with ``file`` (the source's name as the
    compiler is given it), each copied piece carries a ``#line`` back to it."""
    if re.search(r'\bR"', src):
        raise Refused("raw string literal")
    chunks = _chunks(src, _code_only(src), 0, len(src))
    plan = _Plan(file=file)
    _scan(chunks, (), plan)
    if not plan.kernels:
        raise Refused("no kernels")
    used = plan.device_names & plan.host_words
    if used:
        raise Refused(f"host code uses the device symbol(s) {', '.join(sorted(used))}")
    salt = hashlib.sha256(src.encode()).hexdigest()[:10]
    for n, k in enumerate(plan.kernels.values()):
        k.pointer = f"hk_kernel_{salt}_{n}"
    device: list[str] = []
    host: list[str] = []
    _emit(chunks, (), plan, device, host)
    if not any("__cudaPushCallConfiguration" in h for h in host):
        raise Refused("no kernel launch in host code")
    head = (
        "#include <torch/extension.h>\n#include <cuda_runtime.h>\n"
        'extern "C" unsigned __cudaPushCallConfiguration(dim3 gridDim, dim3 blockDim = 1, '
        "size_t sharedMem = 0, struct CUstream_st* stream = 0);\n"
    )
    return Split(
        "\n".join(device) + "\n", head + "\n".join(host) + "\n", list(plan.kernels.values())
    )


def _emit(
    chunks: list[_Chunk], path: tuple[str, ...], plan: _Plan, device: list[str], host: list[str]
) -> None:
    for ch in chunks:
        at = plan.at(ch)
        if ch.kind == "pp":
            _emit_pp(ch, at, device, host)
            continue
        if ch.kind == "namespace":
            dev_in: list[str] = []
            host_in: list[str] = []
            _emit(ch.inner, (*path, ch.head), plan, dev_in, host_in)
            device.append(f"namespace {ch.head} {{\n" + "\n".join(dev_in) + "\n}")
            host.append(f"namespace {ch.head} {{\n" + "\n".join(host_in) + "\n}")
            continue
        code = ch.code
        if ch.kernel is None and "__global__" in code:
            device.append(at + ch.text)  # a prototype
        elif (k := ch.kernel) is not None:
            sig = f"namespace hk_sig_{k.pointer} {{ {k.signature}; }}\n"
            hidden = '__attribute__((visibility("hidden")))'
            device.append(at + ch.text)
            if k.tparams:
                # One pointer per instantiation the host code launches; the device file gets
                # explicit instantiations once the host object says which (instantiations()).
                it = f"{k.name}<{k.targs}>"
                device.append(
                    f"template <{k.tparams}> {hidden} decltype(&{it}) {k.pointer} = &{it};"
                )
                host.append(
                    f"{sig}template <{k.tparams}> extern {hidden} "
                    f"decltype(&hk_sig_{k.pointer}::{it}) {k.pointer};"
                )
            else:
                device.append(
                    f'extern "C" {hidden} decltype(&{k.name}) const {k.pointer} = &{k.name};'
                )
                host.append(
                    f'{sig}extern "C" {hidden} decltype(&hk_sig_{k.pointer}::{k.name}) const '
                    f"{k.pointer};"
                )
        elif any(w in code for w in CUDA_DEVICE_WORDS):
            device.append(at + ch.text)
            name = _type_name(code) if _TYPE_START.match(code.strip()) else None
            if _both_sides(code) or (name and name in plan.host_words):
                host.append(at + ch.text)  # a type the host code uses (g++ may refuse bodies)
        elif (alias := _NAMESPACE_ALIAS.match(code)) and not _TORCH.search(code):
            # `using namespace nvcuda;`, `namespace cg = cooperative_groups;`
            device.append(at + ch.text)
            if not _DEVICE_NAMESPACE.match(alias.group(1)):
                host.append(at + ch.text)
        elif _is_host_code(code) or not _is_shared(code):
            host.append(at + _rewrite_launches(ch.text, code, plan.kernels))
        else:
            device.append(at + ch.text)
            host.append(at + ch.text)


def _emit_pp(ch: _Chunk, at: str, device: list[str], host: list[str]) -> None:
    m = re.match(r"\s*#\s*(\w*)\s*(.*)", ch.text, re.S)
    text = at + ch.text
    word = m.group(1) if m else ""
    rest = m.group(2) if m else ""
    if word not in _PP_OK:
        raise Refused(f"#{word} at file level")
    if word == "include":
        inc = re.match(r"[<\"]([^>\"]+)[>\"]", rest.strip())
        name = inc.group(1) if inc else ""
        if _TORCH_INCLUDE.search(name):
            host.append(text)
        elif _DEVICE_ONLY_INCLUDE.search(name):
            device.append(text)
        else:
            device.append(text)
            host.append(text)
    elif word == "define" and _TORCH.search(ch.code):
        host.append(text)
    else:
        device.append(text)
        host.append(text)


def _qualified(k: Kernel) -> str:
    return "::" + "::".join((*k.path, k.pointer))


def _rewrite_launches(text: str, code: str, kernels: dict[str, Kernel]) -> str:
    """Host code with each ``k<<<cfg>>>(args)`` lowered as nvcc does and every other use of a
    kernel's name replaced by its exported pointer."""
    out: list[str] = []
    i = 0
    while True:
        at = code.find("<<<", i)
        if at < 0:
            break
        before = code[i:at].rstrip()
        targs = None
        if before.endswith(">"):  # kernel<T, 256><<<...>>>: find the matching '<'
            depth, j = 0, len(before) - 1
            while j >= 0:
                depth += before[j] == ">"
                depth -= before[j] == "<"
                if depth == 0:
                    break
                j -= 1
            targs = text[i + j + 1 : i + len(before) - 1]
            before = before[:j]
        m = re.search(r"((?:::)?(?:\w+\s*::\s*)*)(\w+)\s*$", before)
        k = kernels.get(m.group(2)) if m else None
        if m is None or k is None or not _qualifier_ok(m.group(1), k):
            raise Refused("a launch of something that is not a kernel of this file")
        if bool(k.tparams) != (targs is not None):
            raise Refused(f"{k.name} launched without its template arguments spelled out")
        close = _config_end(code, at + 3)
        j = close + 3
        while j < len(code) and code[j].isspace():
            j += 1
        if j >= len(code) or code[j] != "(":
            raise Refused("launch without arguments")
        args_end = _balanced(code, j)
        out.append(_rename(text[i : i + m.start()], code[i : i + m.start()], kernels))
        callee = _qualified(k) + (f"<{targs}>" if targs is not None else "")
        lowered = (
            f"((__cudaPushCallConfiguration({text[at + 3 : close]})) ? (void)0 : "
            f"{callee}{text[j : args_end + 1]})"
        )
        # Line breaks the lowering dropped (around the name, before the arguments) come
        # after it, so the lines below keep their numbers (#line, error messages).
        lost = text[i + m.start() : args_end + 1].count("\n") - lowered.count("\n")
        out.append(lowered + "\n" * max(0, lost))
        i = args_end + 1
    out.append(_rename(text[i:], code[i:], kernels))
    return "".join(out)


def _config_end(code: str, start: int) -> int:
    depth = 0
    for j in range(start, len(code)):
        if code.startswith(">>>", j) and depth == 0:
            return j
        if code[j] in "([{":
            depth += 1
        elif code[j] in ")]}":
            depth -= 1
    raise Refused("launch configuration without >>>")


def _rename(text: str, code: str, kernels: dict[str, Kernel]) -> str:
    """Other uses of a kernel's name (``cudaFuncSetAttribute(k, …)``, ``&k``) → its address
    as the runtime API's C functions take it."""
    if not kernels:
        return text
    names = "|".join(re.escape(n) for n in kernels)
    pattern = re.compile(rf"(?:&\s*)?(?<![.\w>])((?:::)?(?:\w+\s*::\s*)*)\b({names})\b(?!\s*::)")
    pieces: list[str] = []
    last = 0
    for m in pattern.finditer(code):
        k = kernels[m.group(2)]
        if not _qualifier_ok(m.group(1), k):
            continue  # another entity of the same name in another scope
        if k.tparams:
            raise Refused(f"kernel template {k.name} named outside a launch")
        pieces.append(text[last : m.start()])
        # The runtime API's overloads taking a kernel (``cudaFuncSetAttribute(T*, …)``)
        # exist only under nvcc; the C functions under them take ``const void*``.
        pieces.append(f"(reinterpret_cast<const void*>({_qualified(k)}))")
        last = m.end()
    pieces.append(text[last:])
    return "".join(pieces)
