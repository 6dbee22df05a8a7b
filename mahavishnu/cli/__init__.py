"""The command line: `mahavishnu VERB ...`, one module per verb, each imported only when its verb runs.

main.py finds the verb and runs it; verbs.py lists them; running.py runs the chosen
action; every other module here is one verb. A device's `agent run --config FILE` goes
straight to its runner, without argparse (running.py says why).
"""


def main() -> int:
    import sys

    from mahavishnu.cli.running import agent_config_only

    config = agent_config_only(sys.argv[1:])
    if config is not None:
        from pathlib import Path

        from mahavishnu.cli.agent_runner import run_agent
        from mahavishnu.cli.running import run

        return run(lambda: run_agent(Path(config)))
    from mahavishnu.cli.main import main as run_verb

    return run_verb()
