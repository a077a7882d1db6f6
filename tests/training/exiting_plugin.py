"""A trainer plugin whose import exits the interpreter, as a broken or hostile plugin may: registering it must
cost one failed lookup (a 400, a failed run), never the process that loads it."""

raise SystemExit("this plugin exits on import")
