"""Modal screens of the terminal app: source preview, history, model picker, help."""
