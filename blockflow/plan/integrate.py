"""Continuous subsystems integrated by an explicit Runge-Kutta method, as ordinary blocks.

In a model with ``solver=`` the ``Integrator`` blocks are the states ``x`` of a
continuous subsystem ``x' = f(x, u)``.  ``f`` is computed by the *plant blocks*: the
blocks without state, without a sample time of their own and not subsystems, that lie
on a path from an integrator's output back to an integrator's input.  Everything else
that feeds them (Inports, discrete controllers, sources) is an input ``u``, held over
the sample period (zero-order hold from the discrete side).

:func:`integrated` expands such a model into an equivalent discrete one, once per
compile: each integrator becomes a ``UnitDelay`` of the same name holding ``x(k)``; the
plant blocks stay, evaluated at ``(x(k), u(k))`` (what the rest of the model reads);
every further stage ``s`` of every substep gets a copy of each plant block (named
``block@k<s>``, then ``block@<i>k<s>`` for substep ``i``) fed with the stage state
``x + h sum_l a[s][l] k_l`` (Gain and Sum blocks named ``integrator@x<s>...``), and the
substep's ``x + h sum_s b[s] k_s`` (``integrator@next``) feeds the next substep or the
delay.  ``compile(model).describe()`` lists them all.

The stages are discrete-time blocks like any other, so the reciprocal transform, the
tangent and the compiled loops need nothing new: **the gradient through the integrator
is the exact gradient of the discretised map**.  The copies share their block's
parameter arrays (``shares_parameters_with``); their gradients are added to that
block's (:func:`param_owner`).
"""

from __future__ import annotations

import copy
from collections import deque

import numpy as np

from blockflow.core.block import Block
from blockflow.core.model import Model
from blockflow.core.solvers import TABLEAUS
from blockflow.errors import WiringError
from blockflow.plan.cache import cached


def _continuous(b: Block) -> bool:
    return b.continuous_state or b.discretisation() is not None


def integrated(m: Model) -> Model:
    """``m`` itself, or, where it has a ``solver`` and continuous blocks, its expansion
    (cached until ``m`` is edited, a parameter array replaced or its period changed)."""
    if m.solver is None or not any(_continuous(b) for b in m.blocks.values()
                                   if not isinstance(b, Model)):
        return m
    dt = m.dt
    return cached(m, f"integrated:{dt!r}", lambda: _expand(m, dt))


def param_owner(path: str, block: Block) -> str:
    """The path of the block whose parameters ``block`` (at ``path``) uses: a solver stage
    copy's original, else ``path`` itself."""
    if block.shares_parameters_with is None:
        return path
    head, sep, _ = path.rpartition("/")
    return f"{head}{sep}{block.shares_parameters_with}"


def _shallow(b: Block, name: str | None = None) -> Block:
    """A copy of ``b`` for the expanded model, sharing its parameter arrays."""
    c = copy.copy(b)
    c._model = None
    if name is not None:
        c.name = name
        c.shares_parameters_with = b.shares_parameters_with or b.name
    return c


def plant_blocks(m: Model) -> list[str]:
    """The blocks that compute the integrators' inputs from their outputs (see module)."""
    ints = {n for n, b in m.blocks.items() if b.continuous_state}

    def candidate(n: str) -> bool:
        b = m.blocks[n]
        return not (b.stateful or b.source or b.external or isinstance(b, Model)
                    or b.sample_time is not None or not b.outputs)

    def reach(start: set, step) -> set:
        seen, todo = set(), deque(start)
        while todo:
            for nxt in step(todo.popleft()):
                if nxt not in seen and nxt not in ints and candidate(nxt):
                    seen.add(nxt)
                    todo.append(nxt)
        return seen

    down = reach(ints, lambda n: (d for _, d in m.graph.out_edges(n)))
    up = reach(ints, lambda n: (s for s, _ in m.graph.in_edges(n)))
    plant = down & up
    # a subsystem on such a path would be held over the period: refuse, do not guess
    for n, b in m.blocks.items():
        if isinstance(b, Model) and b.feedthrough:
            fed = any(s in plant | ints for s, _ in m.graph.in_edges(n))
            feeds = any(d in plant | ints for _, d in m.graph.out_edges(n))
            if fed and feeds:
                raise WiringError(
                    f"subsystem {n!r} of model {m.name!r} lies on a path from an Integrator "
                    "back to an Integrator, and a solver cannot integrate through a "
                    "subsystem; put its blocks in the plant model (or give it a state or a "
                    "sample_time, so its output is held over each period)")
    return [n for n in m.blocks if n in plant]


class _State(Block):
    """The state of a continuous linear block under a solver, integrated like an
    Integrator's (the expansion replaces it by a UnitDelay from ``x0``)."""

    continuous_state = True
    feedthrough = False

    def __init__(self, x0: np.ndarray, **kw):
        super().__init__(**kw)
        self.x0, self.shape = x0, None


def with_states(m: Model) -> Model:
    """``m`` with each continuous linear block (TransferFcn, ContinuousStateSpace) as an
    Integrator of its state (``name@state``) and the two halves of its realisation:
    ``x' = A x + B u`` (``name@rate``) and ``y = C x + D u`` (named like the block)."""
    lti = [n for n, b in m.blocks.items()
           if not isinstance(b, Model) and not b.continuous_state
           and b.discretisation() is not None]
    if not lti:
        return m
    from blocks.continuous import RealisationPart

    pm = Model(m.name, dt=m.dt)
    for n, b in m.blocks.items():
        if n not in lti:
            pm.add(_shallow(b))
            continue
        if b._params.get("x0"):
            raise WiringError(f"block {n!r} ({type(b).__name__}) of model {m.name!r} trains "
                              f"its initial state (train_x0), which {m.solver} cannot; fix x0")
        state = pm.add(_State(np.array(b.x0, copy=True), name=f"{n}@state"))
        rate = pm.add(RealisationPart(b, "rate", name=f"{n}@rate"))
        out = pm.add(RealisationPart(b, "output", name=n))
        pm.connect(state.y, rate.x)
        pm.connect(rate.y, state.u)
        pm.connect(state.y, out.x)
    for s, d, data in m.graph.edges(data=True):
        src = pm.blocks[s][data["src_port"]]
        if d in lti:
            pm.connect(src, pm.blocks[f"{d}@rate"].u)
            if "u" in pm.blocks[d].inputs:  # (the output reads u where D != 0)
                pm.connect(src, pm.blocks[d].u)
        else:
            pm.connect(src, pm.blocks[d][data["dst_port"]])
    return pm


def _expand(m: Model, h: float) -> Model:
    from blocks.delays import UnitDelay  # (the library: imported only when needed)
    from blocks.math import Gain, Sum

    tab, n_sub, solver = TABLEAUS[m.solver], m.substeps, m.solver
    m = with_states(m)
    h = h / n_sub
    ints = [n for n, b in m.blocks.items() if b.continuous_state]
    for n in ints:
        if m.blocks[n].sample_time is not None:
            raise WiringError(f"Integrator {n!r} of model {m.name!r} has a sample_time; a "
                              f"state of the continuous subsystem ({solver}) runs at the "
                              "model's period")
    plant = plant_blocks(m)
    in_plant = set(plant)
    em = Model(m.name, dt=m.dt)  # (a subsystem's: its parent's, resolved)
    for n, b in m.blocks.items():
        if n in ints:
            x0 = b.x0.reshape(()) if b.x0.size == 1 else b.x0
            em.add(UnitDelay(np.asarray(x0), shape=b.shape, name=n))
        else:
            em.add(_shallow(b))
    for s, d, data in m.graph.edges(data=True):
        if d not in ints:
            em.connect(em.blocks[s][data["src_port"]], em.blocks[d][data["dst_port"]])
    dtype = np.result_type(*(m.blocks[n].x0.dtype for n in ints))

    def weighted(name: str, base, terms: list) -> tuple:
        """``base + h sum w k`` as Gain and Sum blocks; returns its output port."""
        terms = [(w, k) for w, k in terms if w != 0.0]
        if not terms:
            return base
        total = em.add(Sum("+" * (1 + len(terms)), name=name))
        em.connect(em.blocks[base[0]][base[1]], total.u1)
        for i, (w, k) in enumerate(terms):
            g = em.add(Gain(np.asarray(h * w, dtype), trainable=False, name=f"{name}g{i + 1}"))
            em.connect(em.blocks[k[0]][k[1]], g.u)
            em.connect(g.y, total[f"u{i + 2}"])
        return (name, "y")

    def source(n: str, port: str) -> tuple:
        s = m._src.get((n, port))
        if s is None:
            raise WiringError(
                f"input {n}.{port} of block {n!r} ({type(m.blocks[n]).__name__}) in model "
                f"{m.name!r} is not connected; wire a source to it (a Constant if it should "
                "be fixed)")
        return s

    # the states a stage reads (the plant's inputs, or an integrator's): only these
    # get stage values
    read = {src[0] for p in plant for q in m.blocks[p].inputs
            if (src := source(p, q))[0] in ints}
    read |= {src[0] for j in ints if (src := source(j, m.blocks[j].inputs[0]))[0] in ints}
    state = {j: (j, "y") for j in ints}  # x at the start of the substep
    for i in range(n_sub):
        stages: list[dict] = []  # per stage: integrator -> the port carrying k_s
        sub = "" if i == 0 else str(i + 1)  # (names: th@x2, th@next; then th@2x2, ...)
        for s in range(len(tab.b)):
            tag = f"{sub}k{s + 1}"
            if s == 0:
                xs = state
            else:
                xs = {j: weighted(f"{j}@{sub}x{s + 1}", state[j],
                                  [(a, stages[l][j]) for l, a in enumerate(tab.a[s])])
                      for j in ints if j in read}
            first = i == 0 and s == 0
            name = {p: p if first else f"{p}@{tag}" for p in plant}
            if not first:
                for p in plant:
                    em.add(_shallow(m.blocks[p], name[p]))

            def here(src: tuple, name=name, xs=xs) -> tuple:
                b, port = src
                if b in in_plant:
                    return (name[b], port)
                if b in xs:
                    return xs[b]
                return src  # an input of the subsystem: held over the period

            if not first:
                for p in plant:
                    for q in m.blocks[p].inputs:
                        src = here(source(p, q))
                        em.connect(em.blocks[src[0]][src[1]], em.blocks[name[p]][q])
            stages.append({j: here(source(j, m.blocks[j].inputs[0])) for j in ints})
        state = {j: weighted(f"{j}@{sub}next", state[j],
                             [(bw, stages[s][j]) for s, bw in enumerate(tab.b)])
                 for j in ints}
    for j in ints:
        em.connect(em.blocks[state[j][0]][state[j][1]], em.blocks[j].u)
    return em
