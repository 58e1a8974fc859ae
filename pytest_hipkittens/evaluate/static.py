"""Checks of a candidate's source, made in the trusted parent before anything runs.

Source checks are cheap and explain intent; the runtime audit (audit.py) is the evidence.
Two things are read from the source:

* vendor libraries the candidate's own C++/HIP code calls (cuBLAS, hipBLASLt, rocBLAS, …):
  allowed by default and recorded as ``uses_library``, rejected under
  ``--hk-forbid-libraries``;
* a PyTorch fallback in an ``except`` handler of ``ModelNew`` — the kernel "works" on the
  inputs it was tested with and PyTorch does the rest: rejected.
"""

from __future__ import annotations

import ast
import re

#: library name -> pattern of its API or link flag in a candidate's source.
LIBRARIES: dict[str, re.Pattern[str]] = {
    "cublasLt": re.compile(r"\bcublasLt\w*|-lcublasLt\b"),
    "cublas": re.compile(r"\bcublas(?!Lt)\w*\s*\(|cublas_v2\.h|-lcublas\b"),
    "cudnn": re.compile(r"\bcudnn\w*\s*\(|cudnn\.h|-lcudnn\b"),
    "cutlass": re.compile(r"#include\s*[<\"]cutlass/"),
    "hipblaslt": re.compile(r"\bhipblasLt\w*|hipblaslt[/.]|-lhipblaslt\b"),
    "hipblas": re.compile(r"\bhipblas(?!Lt)[A-Z]\w*\s*\(|hipblas\.h|hipblas/|-lhipblas\b"),
    "rocblas": re.compile(r"\brocblas_\w+\s*\(|rocblas\.h|rocblas/|-lrocblas\b"),
    "miopen": re.compile(r"\bmiopen\w*\s*\(|miopen\.h|-lMIOpen\b"),
}
_TORCH_ROOTS = {"torch", "F", "nn", "functional"}


def uses_library(code: str) -> list[str]:
    """Vendor libraries named in the source, in a stable order."""
    return [name for name, pattern in LIBRARIES.items() if pattern.search(code)]


def _calls_torch(node: ast.AST) -> bool:
    for sub in ast.walk(node):
        if isinstance(sub, ast.Call):
            func = sub.func
            while isinstance(func, ast.Attribute):
                func = func.value
            if isinstance(func, ast.Name) and func.id in _TORCH_ROOTS:
                return True
    return False


def torch_fallback(code: str) -> str | None:
    """Where ``ModelNew`` falls back to PyTorch in an ``except`` handler, if it does."""
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return None
    for cls in (n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "ModelNew"):
        for node in ast.walk(cls):
            if isinstance(node, ast.Try):
                for handler in node.handlers:
                    if any(_calls_torch(stmt) for stmt in handler.body):
                        return (
                            f"ModelNew falls back to PyTorch in an except handler (line "
                            f"{handler.lineno}): a kernel that fails must fail, not hand the "
                            "work to PyTorch"
                        )
    return None
