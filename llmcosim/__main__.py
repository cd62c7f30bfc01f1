"""``python -m llmcosim`` runs the CLI."""

from llmcosim.cli import main

__all__: list[str] = []

raise SystemExit(main())
