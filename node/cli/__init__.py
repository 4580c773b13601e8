"""The ``bitcraps-node`` command: ``main.py`` builds the parser, a file per subcommand (the top layer)."""
