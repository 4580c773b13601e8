"""``python -m node.cli``: the same as the ``bitcraps-node`` console script."""

from node.cli.main import main

raise SystemExit(main())
