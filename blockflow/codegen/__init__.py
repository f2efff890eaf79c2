"""A model and its gradient as portable C.

- ``export_c(model, directory)`` writes ``NAME.h`` and ``NAME.c``: the model's step
  (:mod:`blockflow.codegen.forward`) and, with ``reciprocal=True``, the backward sweep of
  its reciprocal model over a recorded run (:mod:`blockflow.codegen.reciprocal`).
- Blocks write their own C beside their rules: ``c_code`` (the forward step),
  ``c_vjp`` (a nonlinear block's reciprocal, ``J(k)^T``) and ``c_param_grads``
  (``dJ/dw`` accumulated step by step); a linear block's reciprocal is derived.
"""

from blockflow.codegen.forward import CBlock, CodegenError, export_c

__all__ = ["CBlock", "CodegenError", "export_c"]
