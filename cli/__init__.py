"""drrkit's command-line interface (Typer). Thin: parse, build a config, call the library."""
