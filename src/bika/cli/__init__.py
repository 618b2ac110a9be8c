"""The command line: parse, call one operation, print, map errors to exit codes."""
