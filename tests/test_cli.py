"""The command line: every command explains itself; user errors exit 2 with a readable message."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pairaug_ray import schema
from pairaug_ray.cli import build_parser, command_names, main

COMMANDS = command_names()


def test_console_script_help():
    # The console script sits beside the interpreter running the tests (the project's venv).
    exe = shutil.which("pairaug", path=os.path.dirname(sys.executable))
    assert exe, "the pairaug console script is installed"
    out = subprocess.run([exe, "--help"], capture_output=True, text=True, check=True).stdout
    for name in ("run", "make-phantom", "label", "manifest"):
        assert name in out
    assert "examples:" in out


def test_the_command_list_comes_from_the_parser():
    # Every command, nested ones included, and nothing else: a new command is tested without an edit here.
    assert {
        "augment",
        "run",
        "train",
        "evaluate",
        "metrics",
        "compare",
        "submit",
        "score",
        "prune",
        "rewrite",
        "generate",
        "config show",
        "manifest show",
        "make-phantom",
        "label",
        "ingest",
    } <= set(COMMANDS)
    assert "manifest" not in COMMANDS and "config" not in COMMANDS and len(COMMANDS) == len(set(COMMANDS))


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(command, capsys):
    with pytest.raises(SystemExit) as e:
        build_parser().parse_args([*command.split(), "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: pairaug " + command)
    assert len(out.splitlines()) > 4


def test_help_keeps_example_lines_whole(capsys):
    """Descriptions wrap as prose; their indented example lines stay one line each, to copy."""
    for command, example in (
        ("study", "  pairaug study --config configs/phantom-study.yaml --quick    # a first look"),
        ("metrics", "  pairaug metrics --labels labels.csv --scores scores.csv --out m.json"),
    ):
        with pytest.raises(SystemExit):
            build_parser().parse_args([command, "--help"])
        lines = capsys.readouterr().out.splitlines()
        assert any(line.startswith(example) for line in lines), command
        assert max(len(line) for line in lines if not line.startswith("  ")) <= 100


def test_config_errors_exit_2(tmp_path, capsys):
    cfg = tmp_path / "job.yaml"
    cfg.write_text("corpus:\n  phantom:\n    patients: many\n")
    assert main(["config", "show", "--config", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert "corpus.phantom.patients" in err and "'many'" in err and "Traceback" not in err


def test_config_show_applies_overrides(capsys):
    assert main(["config", "show", "-c", "configs/demo.yaml", "--set", "corpus.phantom.patients=9"]) == 0
    assert "patients: 9" in capsys.readouterr().out


def test_make_phantom_and_manifest_show(ray_local, tmp_path, capsys):
    out = str(tmp_path / "ph")
    assert main(["make-phantom", out, "--patients", "3", "--size", "64", "--studies", "1", "2"]) == 0
    assert "pairs (3 patients" in capsys.readouterr().out
    assert main(["manifest", "show", out, "--head", "1"]) == 0
    text = capsys.readouterr().out
    summary = json.loads(text[: text.index("\n}\n") + 2])
    assert summary["summary"]["patients"] == 3 and summary["dataset"]["corpus"] == "phantom"


def test_missing_manifest_is_a_user_error(ray_local, tmp_path, capsys):
    assert main(["manifest", "show", str(tmp_path / "none")]) == 2
    assert "no pair manifest" in capsys.readouterr().err


def test_ingest_records_bad_images_and_converts_dicom(ray_local, tmp_path, real_dicom_path, capsys):
    import numpy as np

    from pairaug_ray import images
    from pairaug_ray.manifest import read_manifest, write_manifest

    good = tmp_path / "good.png"
    good.write_bytes(images.encode_png(np.full((8, 8), 7, np.uint8)))
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG broken")
    rows = [
        {schema.PAIR_ID: "dicom", schema.IMAGE_URI: str(real_dicom_path), schema.STATUS: "ok"},
        {schema.PAIR_ID: "good", schema.IMAGE_URI: str(good), schema.STATUS: "ok"},
        {schema.PAIR_ID: "bad", schema.IMAGE_URI: str(bad), schema.STATUS: "ok"},
        {schema.PAIR_ID: "gone", schema.IMAGE_URI: str(tmp_path / "gone.png"), schema.STATUS: "ok"},
    ]
    src, dst = str(tmp_path / "src"), str(tmp_path / "dst")
    write_manifest(rows, src)
    assert main(["ingest", src, dst, "--to-png"]) == 0
    out = {r[schema.PAIR_ID]: r for r in read_manifest(dst).take_all()}
    assert out["bad"][schema.STATUS] == "error" and "bad.png" in out["bad"][schema.ERROR]
    assert out["gone"][schema.STATUS] == "error" and "file not found" in out["gone"][schema.ERROR]
    assert out["dicom"][schema.STATUS] == "ok" and out["dicom"][schema.IMAGE_URI].endswith(".png")
    converted = images.read_image(out["dicom"][schema.IMAGE_URI])
    assert converted.dtype == np.uint16 and converted.shape == (1955, 1841)
    assert "bad.png" in capsys.readouterr().out


def test_label_command(tmp_path, capsys):
    src = tmp_path / "reports.txt"
    src.write_text("No pleural effusion. Small left pneumothorax.\nCardiomegaly.\n")
    out = tmp_path / "labels.csv"
    assert main(["label", str(src), "--out", str(out)]) == 0
    lines = out.read_text().splitlines()
    header = lines[0].split(",")
    first = dict(zip(header, lines[1].split(","), strict=True))
    assert first["Pleural Effusion"] == "0" and first["Pneumothorax"] == "1" and first["Cardiomegaly"] == ""
    assert main(["label", str(src), "--out", str(out), "--column", "text"]) == 2
    assert "plain-text input" in capsys.readouterr().err
    assert main(["label", str(tmp_path / "absent.txt"), "--out", str(out)]) == 2


def test_rewrite_command_with_rules(ray_local, phantom_root, tmp_path, capsys):
    import yaml

    cfg = tmp_path / "job.yaml"
    cfg.write_text(
        yaml.safe_dump(
            {
                "run": {"output_dir": str(tmp_path / "run")},
                "corpus": {"kind": "manifest", "manifest": phantom_root},
                "rewrite": {"backend": "rules", "modes": ["inter"], "min_words": 10},
            }
        )
    )
    assert main(["rewrite", "--config", str(cfg)]) == 0
    captured = capsys.readouterr()
    out = captured.out
    assert "rewrite rows" in out and "inter" in out and "model calls" in out
    # The terminal: where the log is, a line as the stage starts and ends; the library output is in the log.
    log_line, start, end = captured.err.strip().splitlines()[-3:]
    assert (
        log_line.startswith("pairaug rewrite: library and Ray logs go to ")
        and "/run/logs/rewrite-" in log_line
    )
    assert start.startswith("rewrite   ") and end.startswith("rewrite   done: ") and "ok" in end
    # progress.json: the job's state for `pairaug status` and `pairaug submit`.
    progress = json.loads((tmp_path / "run" / "progress.json").read_text())
    assert progress["state"] == "finished" and progress["command"] == "rewrite"
    assert [s["name"] for s in progress["finished_stages"]] == ["rewrite"]
    assert progress["rows"]["done"] == progress["rows"]["total"] > 0 and progress["rows"]["errors"] == 0
    assert main(["status", str(tmp_path / "run")]) == 0
    status = capsys.readouterr().out
    assert "(rewrite): finished" in status and "rewrite   done:" in status
    # An external endpoint is refused before anything runs.
    assert (
        main(
            [
                "rewrite",
                "--config",
                str(cfg),
                "--set",
                "rewrite.backend=openai",
                "--set",
                "rewrite.openai.base_url=https://api.openai.com/v1",
            ]
        )
        == 2
    )
    assert "refusing to send reports to api.openai.com" in capsys.readouterr().err


def test_what_ray_relays_goes_to_the_log_not_the_screen(tmp_path, capsys):
    """Ray's driver relays worker output and the autoscaler's events from its printing thread; on a
    cluster they would fill a job's log (the screen of `ray job submit`). They go to the log file,
    the command's results to the screen (tests/test_quickstart_cluster.py checks it on a real cluster)."""
    import threading

    from pairaug_ray.cli.terminal import RAY_RELAY_THREADS, job_terminal

    def relay() -> None:
        print("(autoscaler +1m9s) Adding 1 node(s) of type gpu.")

    with job_terminal(str(tmp_path / "logs"), "probe") as log:
        print("a result line")
        for name in RAY_RELAY_THREADS:
            thread = threading.Thread(target=relay, name=name)
            thread.start()
            thread.join()
        # A raylet warning written from another thread is known by its prefix.
        print("\x1b[33m(raylet)\x1b[0m There are tasks with infeasible resource requests")
        print("(raylet-free result) stays")
    assert log is not None
    captured = capsys.readouterr()
    assert "a result line" in captured.out and "autoscaler" not in captured.out + captured.err
    assert "infeasible" not in captured.out + captured.err and "(raylet-free result) stays" in captured.out
    assert "infeasible resource requests\n" in Path(log).read_text()
    assert "\n\n" not in captured.out  # the relayed line's end went with it
    assert Path(log).read_text().count("(autoscaler +1m9s) Adding 1 node(s) of type gpu.") == 2
