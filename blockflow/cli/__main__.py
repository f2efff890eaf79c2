"""``python -m blockflow.cli``: the ``blockflow`` command."""

from blockflow.cli import main

raise SystemExit(main())
