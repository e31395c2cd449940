"""``python -m histoviewer`` runs the command-line entry point."""

from histoviewer.cli import main

raise SystemExit(main())
