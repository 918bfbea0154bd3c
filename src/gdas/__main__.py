"""Entry point for ``python -m gdas``."""

from gdas.cli.main import main

raise SystemExit(main())
