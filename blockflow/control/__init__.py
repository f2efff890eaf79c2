"""Control engineering: linearisation, python-control both ways."""
