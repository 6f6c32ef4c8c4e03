"""The ``nufm`` command line: one subcommand per job, each a typed function (tyro)."""

from __future__ import annotations

import logging

import tyro


def version() -> None:
    """Print the nufm version."""
    import nufm

    logging.getLogger("nufm").info("nufm %s", nufm.__version__)
    print(nufm.__version__)  # noqa: T201 (the command's output)


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    tyro.extras.subcommand_cli_from_dict({"version": version})
