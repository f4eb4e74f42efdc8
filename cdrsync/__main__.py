"""`python -m cdrsync` — the same as the `cdrsync` command."""

from .cli import main

main()
