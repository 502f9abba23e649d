"""`python -m jatos_sync` runs the command line."""

from jatos_sync.cli import main_entry

main_entry()
