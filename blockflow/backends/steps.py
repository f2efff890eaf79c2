"""The statements of one step of a feedback loop, shared by the loop generators (the
numpy path's :func:`blockflow.backends.execute.make_loop` and the compiled path's source in
:mod:`blockflow.backends.loops`): outputs in step order, then state updates; ops off the base
rate guarded by their hits; inputs summed over held intervals (reciprocals)."""

from __future__ import annotations

from blockflow.core.rates import BASE as BASE_RATE
from blockflow.core.rates import HOLD, SUM, hits_text


def loop_accumulators(ops) -> list[tuple[int, int, int, bool]]:
    """``(op, input index, slot, direct)`` of every input summed over held intervals;
    a direct (feedthrough) input is summed before the op's output, any other one (known
    only later in the step) before its update."""
    out = []
    for i, op in enumerate(ops):
        if op.io[0] == SUM:
            direct = op.block.direct_inputs()
            out += [(i, j, s, op.block.inputs[j] in direct)
                    for j, s in enumerate(op.ins[:len(op.block.inputs)])]
    return out


def clears_impulses(op) -> bool:
    """Whether ``op`` writes impulses (outputs zero between its hits): a compiled loop
    writes those zeros itself, so their records need not be zeroed before it runs."""
    return op.rate != BASE_RATE and op.io[1] != HOLD and bool(op.outs)


def step_args(i: int, op, read) -> list[str]:
    """The input expressions of op ``i``: summed inputs come from their accumulators."""
    n = len(op.block.inputs)
    summed = op.io[0] == SUM
    return [f"a{i}_{j}" if summed and j < n else read(s) for j, s in enumerate(op.ins)]


def step_body(ops, read, output_call, update_call, store=None,
              copy=lambda src, dst: f"{dst} = {src}",
              accumulate=lambda acc, src: f"{acc} = {acc} + {src}",
              reset=lambda acc: f"{acc} = np.zeros_like({acc})", hold=None,
              clear=None, row=lambda s, k: f"r{s}[{k}]") -> list[str]:
    """The statements of one step of a loop (both generators share them): outputs in
    step order, then state updates; ops off the base rate guarded by their hits.

    ``output_call(i, op)`` / ``update_call(i, op)`` render the calls; ``store(s, expr)``
    the lines that bind ``v{s}`` and record ``r{s}[k]`` from an output expression;
    ``copy(src, dst)`` the line that holds a record row (``dst = src``, or an element
    loop where slice assignment would allocate); ``accumulate(acc, src)`` and
    ``reset(acc)`` the lines that sum an input over a held interval and start again (new
    arrays, or element loops into a buffer the loop is given); ``hold(op)`` the lines
    that hold an op's outputs between its hits (by default: copy the last record row);
    ``clear(s)`` the lines that write a zero row of impulse output ``s`` between its hits
    and bind ``v{s}`` to it (by default ``v{s}`` is the record row, zeroed before the run:
    one pass over memory more than writing the zeros where the loop is anyway).
    ``row(s, k)`` is the expression of slot ``s``'s record row at step ``k``.
    """
    if store is None:
        def store(op, call):
            tgt = ", ".join(f"v{s}" for s in op.outs)
            return [f"{tgt} = {call}"] + [f"{row(s, 'k')} = v{s}" for s in op.outs]

    acc = loop_accumulators(ops)
    w: list = []  # (rate, lines on its hits, lines between) per op, merged at the end

    def guarded(op, lines, other=()):
        return [(op.rate, list(lines), list(other))]

    for i, op in enumerate(ops):
        w += [f"        {accumulate(f'a{i}_{j}', read(s))}" for ii, j, s, d in acc
              if ii == i and d]
        if not op.outs:
            continue
        if op.io[1] == HOLD and hold is not None:
            between = hold(op)
        elif op.io[1] != HOLD and clear is not None:
            between = [ln for s in op.outs for ln in clear(s)]
        else:  # zero before the first hit (as recorded), then the last value held
            between = [f"if k > {op.rate.offset}:"] + [
                f"    {copy(row(s, 'k - 1'), row(s, 'k'))}" for s in op.outs] \
                if op.io[1] == HOLD else []
            between += [f"v{s} = {row(s, 'k')}" for s in op.outs]
        lines = store(op, output_call(i, op))
        if op.state is None:
            lines += [reset(f"a{i}_{j}") for ii, j, _, _ in acc if ii == i]
        w += guarded(op, lines, between)
    for i, op in enumerate(ops):
        if op.state is None:
            continue
        w += [f"        {accumulate(f'a{i}_{j}', read(s))}" for ii, j, s, d in acc
              if ii == i and not d]
        lines = [f"x{op.state} = {update_call(i, op)}"]
        lines += [reset(f"a{i}_{j}") for ii, j, _, _ in acc if ii == i]
        w += guarded(op, lines)
    return _merged(w)


def _merged(parts) -> list[str]:
    """The step's lines: unguarded ones as they are, and consecutive ops of one rate off
    the base rate under one test of their hits (a controller's blocks: one branch)."""
    out: list[str] = []
    i = 0
    while i < len(parts):
        if isinstance(parts[i], str):
            out.append(parts[i])
            i += 1
            continue
        rate, lines, other = parts[i]
        if rate == BASE_RATE:
            out += ["        " + ln for ln in lines]
            i += 1
            continue
        j = i
        while j + 1 < len(parts) and not isinstance(parts[j + 1], str) \
                and parts[j + 1][0] == rate:
            j += 1
            lines = lines + parts[j][1]
            other = other + parts[j][2]
        out += [f"        if {hits_text(rate)}:"] + ["            " + ln for ln in lines]
        if other:
            out += ["        else:"] + ["            " + ln for ln in other]
        i = j + 1
    return out
