"""The commands of `lmforge`, one module per group of stages, in the order of the pipeline (cli.py
lists them): data, pretrain, baselines, align, evaluate, use, run.

Each module has TITLE, its heading in `lmforge --help`, and `add_arguments(sub, fmt)`, which adds
its commands to the top parser. A command's arguments are declared in an `add_*` function beside
the `cmd_*` handler it sets as `func`. Heavy imports (torch) happen inside the handlers, so that
`--help` answers at once. common.py holds what the commands of several groups share.
"""
