"""One module per command group; main.py imports them lazily."""
