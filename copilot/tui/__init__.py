"""The terminal app (`copilot` with no arguments). Everything that imports Textual lives here;
the core (engine, history, config) never imports this package."""
