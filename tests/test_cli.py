import argparse
import json
import os
import subprocess
import sys

import pytest

from lmforge.cli import build_parser



def all_commands(parser=None, prefix=()):
    parser = parser or build_parser()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield prefix + (name,), sub
                yield from all_commands(sub, prefix + (name,))


def test_every_command_and_option_has_help(cli):
    commands = list(all_commands())
    assert {c for c, _ in commands} >= {("tokenizer", "train"), ("tokenizer", "encode"), ("tokenizer", "stats"), ("data", "validate"), ("data", "shards"), ("prepare",), ("checkpoint", "verify")}
    for path, sub in commands:
        code, out, _ = cli(*path, "--help")
        assert code == 0 and "usage: lmforge " + " ".join(path) in out
        for action in sub._actions:
            if action.option_strings or action.dest not in ("command", "action"):
                assert action.help, f"lmforge {' '.join(path)}: {action.option_strings or action.dest} has no help"


def test_version_and_top_help(cli):
    assert cli("--version")[0] == 0
    code, out, _ = cli("--help")
    assert code == 0 and "tokenizer" in out and "prepare" in out


def test_top_help_lists_every_command_by_stage_in_pipeline_order(cli):
    """`lmforge --help` lists each registered command once, under a numbered stage heading, in the
    order of the pipeline, with the help its add_parser gave; cli.py keeps only the top parser and
    the dispatch (the commands live in lmforge/commands/)."""
    import re
    from pathlib import Path

    import lmforge.cli

    code, out, _ = cli("--help")
    assert code == 0
    listing = out.split("positional arguments:")[0]
    stages, listed = [], []
    for line in listing.split("\n"):
        if re.fullmatch(r"\d+ \w+", line):
            stages.append(line)
        elif m := re.match(r"  (\S+) {2,}\S", line):
            assert stages, f"{m[1]} is listed before any stage heading"
            listed.append(m[1])
    assert [int(s.split()[0]) for s in stages] == list(range(1, len(stages) + 1)) and len(stages) >= 5
    registered = [path[0] for path, _ in all_commands() if len(path) == 1]
    assert sorted(listed) == sorted(registered), "every command listed once"
    order = [listed.index(c) for c in ("world", "pretrain", "sft", "rl", "eval", "serve")]
    assert order == sorted(order), listed
    assert "  world " in listing and "generate the built-in world" in listing
    assert "Elo ratings with 95% intervals" in listing  # argparse's %% escape undone, as argparse would
    assert len(Path(lmforge.cli.__file__).read_text().splitlines()) < 400


def test_tokenizer_train_encode_stats(cli, corpus_jsonl, tmp_path):
    out = tmp_path / "tok"
    code, stdout, _ = cli("tokenizer", "train", "--data", corpus_jsonl, "--vocab-size", 300, "--min-frequency", 1, "--out", out)
    assert code == 0 and (out / "tokenizer.json").exists()
    code, stdout, _ = cli("tokenizer", "encode", "--tokenizer", out, "--text", "the cat", "--json")
    assert code == 0 and json.loads(stdout)["ids"]
    code, stdout, _ = cli("tokenizer", "stats", "--tokenizer", out, "--data", corpus_jsonl, "--json")
    stats = json.loads(stdout)
    assert code == 0 and stats["documents"] == 200 and stats["bytes_per_token"] > 1


def test_prepare_writes_a_complete_run_directory(cli, corpus_txt, tmp_path):
    out = tmp_path / "run"
    code, stdout, err = cli("prepare", f"data.path={corpus_txt}", "data.sample_by=line", "tokenizer.vocab_size=300", "shards.val_fraction=0.1", "--out", out, "--json")
    assert code == 0, err
    summary = json.loads(stdout)
    assert summary["splits"]["train"]["documents"] + summary["splits"]["val"]["documents"] == 200
    assert {p.name for p in out.iterdir()} == {"config.yaml", "tokenizer.json", "shards", "summary.json"}
    assert "vocab_size: 300" in (out / "config.yaml").read_text()
    code, stdout, _ = cli("data", "validate", "--data", out / "shards", "--json")
    assert code == 0 and json.loads(stdout)["ok"]


def test_prepare_with_a_recipe(cli, corpus_txt, tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"data:\n  path: {corpus_txt}\n  sample_by: line\ntokenizer:\n  kind: char\n  vocab_size: 60\n")
    code, _, err = cli("prepare", recipe, "--out", tmp_path / "run")
    assert code == 0, err
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["tokenizer"]["kind"] == "char"


def test_shipped_recipes_load():
    from pathlib import Path

    from lmforge.config import load_config
    from lmforge.data.prepare import PrepareConfig

    recipes = sorted(Path(__file__).parent.parent.joinpath("recipes").glob("prepare*.yaml"))
    assert recipes
    for r in recipes:
        load_config(PrepareConfig, r, ["data.path=x"])


# ------------------------------------------------------------------ bad input: exit 2, one clear line


def assert_clean_failure(result, *fragments):
    code, out, err = result
    assert code == 2, (code, out, err)
    assert "Traceback" not in err
    line = err.strip()
    assert "\n" not in line, err
    for f in fragments:
        assert str(f) in line, (f, line)


def test_bad_inputs_through_the_cli(cli, tmp_path):
    tok_out = tmp_path / "tok"
    cases = []
    malformed = tmp_path / "malformed.jsonl"
    malformed.write_text('{"text": "a"}\n{"text": "b",}\n')
    cases.append((malformed, [f"{malformed}:2", "malformed JSON"]))
    missing = tmp_path / "missing.jsonl"
    missing.write_text('{"text": "a"}\n{"txt": "b"}\n')
    cases.append((missing, [f"{missing}:2", "field 'text'", "missing"]))
    mistyped = tmp_path / "mistyped.jsonl"
    mistyped.write_text('{"text": ["a"]}\n')
    cases.append((mistyped, [f"{mistyped}:1", "field 'text'", "must be a string"]))
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    cases.append((empty, [str(empty), "empty"]))
    latin = tmp_path / "latin.txt"
    latin.write_bytes(b"ok\nna\xefve\n")
    cases.append((latin, [f"{latin}:2", "UTF-8"]))
    nodata = tmp_path / "nodata"
    nodata.mkdir()
    (nodata / "image.png").write_bytes(b"\x89PNG")
    cases.append((nodata, [str(nodata), "no readable data files"]))
    for data, fragments in cases:
        assert_clean_failure(cli("tokenizer", "train", "--data", data, "--out", tok_out), *fragments)
        assert not tok_out.exists(), f"partial output left after {data}"
        assert_clean_failure(cli("prepare", f"data.path={data}", "--out", tmp_path / "run"), *fragments)
        assert not (tmp_path / "run").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "temporary files left behind"


def test_validate_reports_schema_errors(cli, tmp_path):
    f = tmp_path / "prefs.jsonl"
    f.write_text('{"prompt": "q", "chosen": "a", "rejected": "b"}\n{"prompt": "q", "chosen": "a", "rejected": 7}\n')
    assert_clean_failure(cli("data", "validate", "--data", f), f"{f}:2", "field 'rejected'")
    f.write_text('{"prompt": "q", "completions": ["a", "b"], "ranking": [1, 1]}\n')
    assert_clean_failure(cli("data", "validate", "--data", f), f"{f}:1", "field 'ranking'", "permutation")


def test_unknown_config_key(cli, tmp_path, corpus_txt):
    assert_clean_failure(cli("prepare", f"data.path={corpus_txt}", "shards.val_fractoin=0.1", "--out", tmp_path / "r"), "shards.val_fractoin", "did you mean 'shards.val_fraction'")
    recipe = tmp_path / "r.yaml"
    recipe.write_text("data:\n  path: x\n  smaple_by: line\n")
    assert_clean_failure(cli("prepare", recipe, "--out", tmp_path / "r"), f"{recipe}:3", "data.smaple_by", "did you mean 'data.sample_by'")
    assert not (tmp_path / "r").exists()


def test_truncated_safetensors(cli, tmp_path):
    import torch

    from lmforge.checkpoint import save_model

    save_model(tmp_path / "m", {"w": torch.randn(64, 64)}, {"kind": "test"})
    f = tmp_path / "m" / "model.safetensors"
    f.write_bytes(f.read_bytes()[:1000])
    assert_clean_failure(cli("checkpoint", "verify", tmp_path / "m"), str(f), "truncated or corrupt safetensors")


def test_existing_output_is_kept(cli, corpus_jsonl, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "mine.txt").write_text("keep me")
    assert_clean_failure(cli("tokenizer", "train", "--data", corpus_jsonl, "--out", out), str(out), "--overwrite")
    assert (out / "mine.txt").read_text() == "keep me"


def test_console_script_exits_2_without_traceback(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text("{nope\n")
    env = {**os.environ, "LMFORGE_PROGRESS": "0"}
    r = subprocess.run([sys.executable, "-m", "lmforge", "data", "validate", "--data", str(bad)], capture_output=True, text=True, env=env)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.strip() == f"lmforge data validate: error: {bad}:1: malformed JSON: Expecting property name enclosed in double quotes at column 2"


def test_overrides_may_follow_options():
    """KEY=VALUE after an option joins the overrides (argparse alone stops the list at the first
    option, so `lmforge rl recipes/ppo.yaml --algorithm rloo rollout.group_size=4` was refused)."""
    from lmforge.cli import parse_args

    args = parse_args(["rl", "recipes/ppo.yaml", "iterations=2", "--algorithm", "rloo", "rollout.group_size=4", "--out", "d"])
    assert args.recipe == "recipes/ppo.yaml" and args.overrides == ["iterations=2", "rollout.group_size=4"]
    args = parse_args(["prepare", "data.corpus=x.txt", "--out", "d", "seed=3"])
    assert args.recipe is None and args.overrides == ["data.corpus=x.txt", "seed=3"]
    for bad in (["rl", "recipes/ppo.yaml", "--out", "d", "--bogus"], ["generate", "--model", "m", "--prompt", "p", "x=1"]):
        with pytest.raises(SystemExit) as e:
            parse_args(bad)
        assert e.value.code == 2
