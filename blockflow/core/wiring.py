"""Wires between named blocks: which output drives each input, and who reads each block.

Both indexes are plain dicts kept in step by :meth:`Wired._wire` and :meth:`Wired._unwire`,
so adding a wire, finding its source and walking a block's readers cost O(1) (O(degree)
to remove one); a ``networkx`` view of the same wiring is built only when something asks
for :attr:`Wired.graph` (drawing, reports), never on the path of building or compiling.
"""

from __future__ import annotations

from collections.abc import Iterator

import networkx as nx

PortKey = tuple[str, str]  # (block name, port name)
Reader = tuple[str, str, str]  # (src port, dst block, dst port)


class Wired:
    """The wiring of blocks keyed by name (a model's, or a flattened model's).

    Subclasses keep their blocks in ``self.blocks`` (name -> block, in the order added)
    and call :meth:`_init_wiring` before wiring anything.
    """

    blocks: dict

    def _init_wiring(self) -> None:
        self._src: dict[PortKey, PortKey] = {}  # (block, input) -> (block, output)
        self._readers: dict[str, list[Reader]] = {}  # block -> its wires out, in order
        self._wiring_version = 0
        self._graph_cache: tuple[int, nx.MultiDiGraph] | None = None

    def _wire(self, s: PortKey, d: PortKey) -> None:
        self._src[d] = s
        self._readers.setdefault(s[0], []).append((s[1], d[0], d[1]))
        self._wiring_version += 1

    def _unwire(self, d: PortKey) -> PortKey:
        s = self._src.pop(d)
        self._readers[s[0]].remove((s[1], d[0], d[1]))
        self._wiring_version += 1
        return s

    def _touch(self) -> None:
        """Blocks were added: the graph view is out of date."""
        self._wiring_version += 1

    def source_of(self, block: str, port: str) -> PortKey | None:
        """The ``(block, port)`` output feeding input ``port`` of ``block``, if any."""
        return self._src.get((block, port))

    def readers(self, block: str) -> list[Reader]:
        """The wires out of ``block``: ``(src_port, dst_block, dst_port)`` in wiring order."""
        return self._readers.get(block, [])

    def wires(self) -> Iterator[tuple[PortKey, PortKey]]:
        """Every wire as ``((src, src_port), (dst, dst_port))``, grouped by source block
        in block order (the order of :attr:`graph`'s edges)."""
        for s in self.blocks:
            for sp, d, dp in self._readers.get(s, ()):
                yield (s, sp), (d, dp)

    @property
    def graph(self) -> nx.MultiDiGraph:
        """The wiring as a ``networkx.MultiDiGraph``: nodes are block names, an edge
        ``src -> dst`` carries ``src_port`` and ``dst_port``.  Built on first use after a
        change and shared until the next; frozen (wire with ``connect``).
        """
        hit = self._graph_cache
        if hit is not None and hit[0] == self._wiring_version:
            return hit[1]
        g = nx.MultiDiGraph()
        g.add_nodes_from(self.blocks)
        g.add_edges_from((s, d, {"src_port": sp, "dst_port": dp})
                         for (s, sp), (d, dp) in self.wires())
        nx.freeze(g)  # (editing it would change nothing: it says so instead)
        self._graph_cache = (self._wiring_version, g)
        return g
