"""The block protocol and everything below it: signal types, ports, blocks, models (a
builder), sample rates, the ``@kernel`` decorator, the block registry and the numerics
blocks need (c2d).  Block libraries (``blocks/``) import this layer only."""
