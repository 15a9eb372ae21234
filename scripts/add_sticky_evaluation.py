"""Add the sticky-actions evaluation to a shipped agent's card, in a fresh process.

    .venv/bin/python scripts/add_sticky_evaluation.py pong

Agents exported before ``export_pretrained.py`` recorded both protocols have only
``evaluation`` (the protocol of Wang et al., 2016: a deterministic emulator). This plays
the same number of games, with the same seed, with sticky actions (repeat probability
0.25: Machado et al., 2018) and writes the result as ``evaluation_sticky`` into
``duel_tutorial/pretrained/NAME.json``, with this command's provenance. The weights and
the metadata inside ``NAME.safetensors`` are not touched. Whatever the score, it is
written: this is a measurement, not a gate.
"""

from __future__ import annotations

import argparse
import json
import sys

import ale_py

from duel_tutorial.checkpoint import check_pretrained_name, load_pretrained, pretrained_path
from duel_tutorial.evaluate import STICKY, evaluation_record
from duel_tutorial.provenance import provenance


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="add_sticky_evaluation.py",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("name", help="a shipped agent, e.g. pong")
    parser.add_argument("--repeat-action-probability", type=float, default=STICKY)
    args = parser.parse_args(argv)
    ale_py.ALEInterface.setLoggerMode(ale_py.LoggerMode.Error)
    try:
        check_pretrained_name(args.name)
        card_path = pretrained_path(args.name).with_suffix(".json")
        card = json.loads(card_path.read_text())
        network = load_pretrained(args.name, device="cpu")
    except (ValueError, OSError) as err:
        parser.exit(2, f"{parser.prog}: error: {' '.join(str(err).split())}\n")
    main_protocol = card["evaluation"]
    record = evaluation_record(network, card["config"]["env_id"], main_protocol["episodes"],
                               main_protocol["seed"], args.repeat_action_probability)
    record["provenance"] = provenance(device="cpu", wall_time_s=record["wall_time_s"])
    card["evaluation_sticky"] = record
    card_path.write_text(json.dumps(card, indent=2) + "\n")
    print(f"{args.name}: {record['episodes']} games with sticky actions "
          f"(p={record['repeat_action_probability']:g}): mean {record['mean']:.2f}, std "
          f"{record['std']:.2f} (without: {main_protocol['mean']:.2f}); wrote {card_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
