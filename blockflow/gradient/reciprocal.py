"""The reciprocal transformer (Wan & Beaufays, 1994).

``reciprocal(model)`` clones a model into its reciprocal model, an ordinary
:class:`~blockflow.core.model.Model`: every wire is reversed and carries the delta
``dJ/ds(k)`` of the signal ``s`` it carried, and

1. summing junctions become branching points (``Sum`` -> its ``JacobianT``: ``+-delta``);
2. branching points become summing junctions (a :class:`Junction` per fan-out);
3. univariate functions become time-varying gains ``f'(a(k))``;
4. multivariate functions (Dense, MLP, Product, Softmax, LSTM, ...) become ``J(k)^T``;
5. unit delays become unit advances (stateful linear blocks become their transposed
   realisation run backwards in time: ``Anticausal``);
6. outputs become inputs (fed with ``dL/dy``) and inputs become outputs (``dJ/dx``).

Every reciprocal block keeps its forward block's name and port names (directions
swapped), so a delta is addressed exactly like the signal it belongs to.  Subsystems
become reciprocal subsystems.  Taking the reciprocal twice gives back the structure of
the model.
"""

from __future__ import annotations

from blockflow.core.block import Block
from blockflow.core.model import Model
from blockflow.core.types import PortTypes, delta_type
from blockflow.errors import ReciprocalNotDefinedError
from blockflow.gradient.adjoint import Junction, ZeroSource
from blockflow.gradient.derive import reciprocal_block
from blockflow.plan.compiler import compile
from blockflow.plan.expand import expanded


def reciprocal(model: Model) -> Model:
    """The reciprocal model of ``model`` (checked like any model; see module docs).

    Raises
    ------
    ReciprocalNotDefinedError
        A block has no reciprocal rule (and is not marked ``nondifferentiable``).

    Examples
    --------
    >>> from models.closed_loop import tanh_loop
    >>> r = reciprocal(tanh_loop())
    >>> r.blocks["z"].label(), r.blocks["tanh"].label()     # delay -> advance; f -> f'(a(k))
    ('z⁺¹', '× tanh′(u(k))')
    >>> type(r.blocks["y"]).__name__, r.blocks["plant+y"].inputs   # output -> input; branch -> sum
    ('Inport', ('u1', 'u2'))
    """
    plan = compile(model)
    rm = _reciprocal(model, "", plan.types, plan.rates)
    rm.name = f"reciprocal({model.name})"
    compile(rm)  # the reciprocal is checked like any user model
    return rm


def port_types(block: Block, path: str, types: dict) -> PortTypes:
    """The input, output and residual types of the block at ``path`` of a compiled model."""
    return PortTypes(tuple(types[(path, p)] for p in block.inputs),
                     tuple(types[(path, p)] for p in block.outputs),
                     tuple(types[(path, p)] for p in block.residuals))


def _reciprocal_block(b: Block, path: str, types: dict, rates: dict) -> Block:
    rb = reciprocal_block(b, port_types(b, path, types))
    if path in rates:  # runs on the forward block's hits (as the transpose)
        rb.rate_hint = rates[path]
    if set(rb.inputs) != set(b.outputs) or set(rb.outputs) != set(b.inputs):
        raise ReciprocalNotDefinedError(
            f"block {path!r} ({type(b).__name__}): its reciprocal must take the forward "
            f"outputs {list(b.outputs)} as inputs and give the forward inputs "
            f"{list(b.inputs)}; got inputs {list(rb.inputs)}, outputs {list(rb.outputs)}"
        )
    return rb


def _reciprocal(m: Model, prefix: str, types: dict, rates: dict) -> Model:
    m = expanded(m)  # (a solver's stages are blocks like any other)
    rm = Model(m.name, dt=m._dt)  # the same sample period: period-dependent rules agree
    rm.reciprocal_of = m.name
    with rm.deferred_types(check=False):  # (types inferred once: by compiling it)
        _wire_reciprocal(m, rm, prefix, types, rates)
    return rm


def _wire_reciprocal(m: Model, rm: Model, prefix: str, types: dict, rates: dict) -> None:
    junctions = {n for n, b in m.blocks.items() if b.junction}
    for name, b in m.blocks.items():
        if name in junctions:
            continue
        rb = (_reciprocal(b, f"{prefix}{name}/", types, rates) if isinstance(b, Model)
              else _reciprocal_block(b, prefix + name, types, rates))
        rm.add(rb)

    fan: dict[tuple[str, str], list[tuple[str, str]]] = {}  # each output's readers
    for name in m.blocks:
        for sp, d, dp in m.readers(name):
            fan.setdefault((name, sp), []).append((d, dp))

    def consumers(name: str, port: str):
        """Forward readers of ``name.port``, looking through junctions (branch points)."""
        out = []
        for d, dp in fan.get((name, port), ()):
            if d in junctions:
                out += consumers(d, "y")
            else:
                out.append((d, dp))
        return out

    def out_type(name: str, port: str):
        b = m.blocks[name]
        if isinstance(b, Model):
            return types[(f"{prefix}{name}/{port}", "u" if "u" in b.blocks[port].inputs
                          else b.blocks[port].inputs[0])]
        return types[(prefix + name, port)]

    for name, b in m.blocks.items():
        if name in junctions:
            continue
        for port in b.outputs:
            readers = consumers(name, port)
            dst = rm.blocks[name][port]
            if len(readers) == 1:
                rm.connect(rm.blocks[readers[0][0]][readers[0][1]], dst)
                continue
            jname = f"{name}+{port}"
            while jname in rm.blocks or jname in m.blocks:
                jname += "+"
            if not readers:
                rm.connect(rm.add(ZeroSource(delta_type(out_type(name, port)), name=jname)),
                           dst)
                continue
            j = rm.add(Junction(len(readers), name=jname))
            for i, (d, dp) in enumerate(readers):
                rm.connect(rm.blocks[d][dp], j[f"u{i + 1}"])
            rm.connect(j, dst)
