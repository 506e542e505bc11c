"""The ncalab command line (Typer)."""
