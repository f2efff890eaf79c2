"""A model and its gradient as portable C.

- ``export_c(model, directory)`` writes ``NAME.h`` and ``NAME.c``: the model's step
  (:mod:`blockflow.codegen.forward`) and, with ``reciprocal=True``, the backward sweep of
  its reciprocal model over a recorded run (:mod:`blockflow.codegen.reciprocal`).
- Blocks write their own C beside their rules: ``c_code`` (the forward step),
  ``c_vjp`` (a nonlinear block's reciprocal, ``J(k)^T``) and ``c_param_grads``
  (``dJ/dw`` accumulated step by step); a linear block's reciprocal is derived.
"""

from pathlib import Path

from blockflow.codegen.forward import CBlock, CodegenError, _Generator, _ident
from blockflow.codegen.reciprocal import reciprocal_parts

__all__ = ["CBlock", "CodegenError", "export_c"]


def export_c(model, directory, name: str | None = None, dtype: str = "double", *,
             reciprocal: bool = False) -> tuple[Path, Path]:
    """Write ``NAME.h`` and ``NAME.c`` for ``model`` into ``directory`` (see the module);
    returns their paths.  ``dtype``: ``"double"`` or ``"float"`` (single precision).
    ``reciprocal=True`` adds the gradient: ``NAME_record`` and ``NAME_grad``, the
    backward sweep over a recorded run (:mod:`blockflow.codegen.reciprocal`)."""
    if dtype not in ("double", "float"):
        raise CodegenError(f"dtype must be 'double' or 'float', got {dtype!r}")
    name = _ident(name or model.name)
    gen = _Generator(model, name, dtype)
    extra = ([], [])
    if reciprocal:
        extra = reciprocal_parts(model, gen)
    header, source = gen.source(*extra)
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    h, c = d / f"{name}.h", d / f"{name}.c"
    h.write_text(header)
    c.write_text(source)
    return h, c
