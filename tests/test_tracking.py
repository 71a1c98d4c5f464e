import json

from lmforge.tracking import MetricsLogger, read_metrics


def test_metrics_are_appended_and_flushed(tmp_path):
    log = MetricsLogger(tmp_path)
    log.log(1, loss=2.5)
    log.log(2, loss=2.0, lr=0.1)
    rows = read_metrics(tmp_path)  # readable before close: every line is flushed
    assert [(r["step"], r["loss"]) for r in rows] == [(1, 2.5), (2, 2.0)]
    log.close()


def test_resume_drops_lines_after_the_checkpoint_and_a_torn_last_line(tmp_path):
    with MetricsLogger(tmp_path) as log:
        for step in range(1, 6):
            log.log(step, loss=float(step))
    with open(tmp_path / "metrics.jsonl", "a") as f:
        f.write('{"step": 6, "lo')  # killed mid-write
    with MetricsLogger(tmp_path, resume_step=3) as log:
        log.log(4, loss=40.0)
    assert [(r["step"], r["loss"]) for r in read_metrics(tmp_path)] == [(1, 1.0), (2, 2.0), (3, 3.0), (4, 40.0)]


def test_fresh_run_starts_a_fresh_log(tmp_path):
    with MetricsLogger(tmp_path) as log:
        log.log(1, loss=1.0)
    with MetricsLogger(tmp_path) as log:
        log.log(1, loss=9.0)
    assert [r["loss"] for r in read_metrics(tmp_path)] == [9.0]


def test_tensorboard_receives_scalars(tmp_path):
    import pytest

    pytest.importorskip("tensorboard")
    with MetricsLogger(tmp_path, tensorboard=True) as log:
        log.log(1, loss=1.0, note="text is kept out of tensorboard")
    assert list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))
    assert json.loads((tmp_path / "metrics.jsonl").read_text())["note"].startswith("text")
