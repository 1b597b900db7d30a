"""Use cases behind the command line: answer, replay, the signal handling of long commands.

The command line (sim/cli.py) parses and prints; what a command does lives here."""
