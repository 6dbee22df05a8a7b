"""The command line: `mahavishnu VERB ...`, one module per verb, each imported only when its verb runs.

main.py finds the verb and runs it; verbs.py lists them; every other module here is one verb.
"""


def main() -> int:
    from mahavishnu.cli.main import main as run

    return run()
