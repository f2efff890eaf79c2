"""Orderings of a plan's dependency graph, on blocks numbered ``0..n-1``.

The graph is given as successor lists (``succ[v]``: the blocks ``v`` feeds; a wire may
appear more than once).  Every function here is linear in blocks and wires, iterative (no
recursion limit at any size) and deterministic: among blocks free to go next, the lowest
number goes first, so a plan's order follows the order blocks were added in.
"""

from __future__ import annotations

from heapq import heapify, heappop, heappush


def topological_order(succ: list[list[int]], nodes: list[int] | None = None
                      ) -> list[int] | None:
    """The blocks in dependency order, lowest number first among the ready ones (Kahn's
    algorithm with a heap); ``None`` if a cycle leaves some unordered.

    ``nodes`` restricts the order to those blocks (wires leaving them are ignored).
    """
    if nodes is None:
        nodes = range(len(succ))
        inside = None
    else:
        inside = set(nodes)
    indeg = dict.fromkeys(nodes, 0)
    for v in nodes:
        for w in succ[v]:
            if inside is None or w in inside:
                indeg[w] += 1
    ready = [v for v, d in indeg.items() if d == 0]
    heapify(ready)
    order = []
    while ready:
        v = heappop(ready)
        order.append(v)
        for w in succ[v]:
            if inside is None or w in inside:
                indeg[w] -= 1
                if indeg[w] == 0:
                    heappush(ready, w)
    return order if len(order) == len(indeg) else None


def strong_components(succ: list[list[int]]) -> list[list[int]]:
    """The strongly connected components (Tarjan's algorithm, with an explicit stack)."""
    n = len(succ)
    index, low = [-1] * n, [0] * n
    on_stack = [False] * n
    stack: list[int] = []
    comps: list[list[int]] = []
    counter = 0
    for root in range(n):
        if index[root] >= 0:
            continue
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack[root] = True
        work = [(root, iter(succ[root]))]
        while work:
            v, edges = work[-1]
            for w in edges:
                if index[w] < 0:
                    index[w] = low[w] = counter
                    counter += 1
                    stack.append(w)
                    on_stack[w] = True
                    work.append((w, iter(succ[w])))
                    break
                if on_stack[w] and index[w] < low[v]:
                    low[v] = index[w]
            else:  # every successor of v done
                work.pop()
                if work:
                    u = work[-1][0]
                    if low[v] < low[u]:
                        low[u] = low[v]
                if low[v] == index[v]:
                    comp = []
                    while True:
                        w = stack.pop()
                        on_stack[w] = False
                        comp.append(w)
                        if w == v:
                            break
                    comps.append(sorted(comp))
    return comps


def condensed_order(succ: list[list[int]]) -> list[list[int]]:
    """The strongly connected components in dependency order, each as its sorted blocks;
    among the ready components, the one holding the lowest-numbered block goes first."""
    comps = strong_components(succ)
    label = [0] * len(succ)
    for c, members in enumerate(comps):
        for v in members:
            label[v] = c
    csucc: list[list[int]] = [[] for _ in comps]
    for v, ws in enumerate(succ):
        for w in ws:
            if label[v] != label[w]:
                csucc[label[v]].append(label[w])
    # number the components by their lowest block, so "lowest number first" carries over
    rank = sorted(range(len(comps)), key=lambda c: comps[c][0])
    renum = {c: i for i, c in enumerate(rank)}
    rsucc = [[renum[d] for d in csucc[c]] for c in rank]
    return [comps[rank[i]] for i in topological_order(rsucc)]
