"""What the CLI shows a reader (issue 12): plain progress lines when stderr is not a terminal, ETAs
that count early stopping, an overall grid ETA, help without "<bool>" on flags, consistent argument
names, and tables not cut at 80 columns."""

from __future__ import annotations

import io
import re

from rich.console import Console
from rich.progress import Progress
from rich.table import Table
from typer.testing import CliRunner

from parrot_ser.cli import common
from parrot_ser.cli.main import app
from parrot_ser.training.grid import _GridProgress, _task_name


class Clock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


def test_plain_progress_lines_when_stderr_is_not_a_terminal():
    buf = io.StringIO()
    clock = Clock()
    p = common.PlainProgress(console=Console(file=buf, width=200), interval=10.0, get_time=clock)
    task = p.add_task("cnn (logmel)", total=100, rate="")
    for epoch in range(1, 6):  # 5 epochs of a 50-epoch fold, 2 s each
        clock.t += 2.0
        p.update(task, advance=1, rate=f"seed 0 fold 0 ep {epoch}")
    p.advance(task, 45)  # early stop: the fold's unused epochs at once
    clock.t += 2.0
    p.update(task, advance=1, rate="seed 0 fold 1 ep 1")
    clock.t += 2.0
    p.advance(task, 49)  # last fold stopped too
    lines = buf.getvalue().splitlines()
    assert lines[0].startswith("cnn (logmel): 1/100 (1%) seed 0 fold 0 ep 1 elapsed 0:00:02 eta")
    # 51 of 100 done in 12 s -> 12 s left, not the 98 s that 49 epochs at 2 s each would claim
    assert lines[1] == "cnn (logmel): 51/100 (51%) seed 0 fold 1 ep 1 elapsed 0:00:12 eta 0:00:12"
    assert lines[-1].startswith("cnn (logmel): 100/100 (100%)") and lines[-1].endswith("done")
    assert len(lines) == 3  # periodic, not one per update


def test_make_progress_is_plain_and_quiet_when_asked():
    assert isinstance(common.make_progress("epoch"), common.PlainProgress)  # pytest's stderr is no terminal
    buf = io.StringIO()
    p = common.PlainProgress(console=Console(file=buf), interval=0.0, quiet=True)
    t = p.add_task("x", total=2, rate="")
    p.advance(t, 2)
    assert buf.getvalue() == ""


def test_grid_eta_moves_during_a_cell():
    p = Progress(disable=True)
    grid = p.add_task("grid cells", total=4, rate="")
    share = _GridProgress(p, grid)
    share.cell_done(_task_name("cnn", ["logmel"]))  # a finished cell (resumed: no task)
    cell = share.add_task(_task_name("parrot", ["a", "b"]), total=10, rate="")
    share.advance(cell, 5)
    assert p.tasks[grid].completed == 1.5
    share.update(cell, advance=5)
    assert p.tasks[grid].completed == 2.0
    share.cell_done(_task_name("parrot", ["a", "b"]), rate="parrot done")
    assert p.tasks[grid].completed == 2.0 and p.tasks[grid].fields["rate"] == "parrot done"


def test_average_eta_counts_the_whole_run():
    clock = Clock()
    p = Progress(disable=True, get_time=clock)
    t = p.add_task("x", total=100)
    assert common.average_eta(p.tasks[t]) is None
    clock.t = 10.0
    p.update(t, completed=25)
    assert common.average_eta(p.tasks[t]) == 30.0


def test_help_shows_no_bool_type_on_flags_and_arguments_as_in_messages():
    runner = CliRunner()
    text = runner.invoke(app, ["extract", "--help"], env={"COLUMNS": "160"}).output
    assert "<bool>" not in text and "[ROOT]" in text and "[root]" not in text
    assert re.search(r"--json\s+Reports as one JSON", text)
    inspect = runner.invoke(app, ["corpus", "inspect", "--help"], env={"COLUMNS": "160"}).output
    assert "{root}" not in inspect and "inspect [OPTIONS] ROOT" in inspect
    missing = runner.invoke(app, ["predict"])
    assert missing.exit_code == 2 and "MODEL_DIR" in missing.output


def test_help_keeps_the_square_brackets_of_extras():
    """Typer renders help as rich markup, where `parrot-ser[onnx]` is a style tag (issue 20, item 6):
    every `name[extra]` written in a CLI help text must reach --help as written."""
    from pathlib import Path

    import parrot_ser.cli as cli

    sources = "".join(p.read_text() for p in Path(cli.__file__).parent.glob("*.py"))
    written = set(re.findall(r"parrot-ser\[\w+\]", sources))
    assert {"parrot-ser[onnx]", "parrot-ser[ray]"} <= written
    runner = CliRunner()
    shown = "".join(runner.invoke(app, [*cmd, "--help"], env={"COLUMNS": "400"}).output
                    for cmd in (["extract"], ["train"], ["grid"], ["export"], ["predict"], ["serve"], ["demo"]))
    assert "(needs parrot-ser[onnx])" in shown and "(pip install 'parrot-ser[ray]')" in shown
    assert "parrot-ser)" not in shown and "'parrot-ser')" not in shown


def test_tables_are_not_cut_at_80_columns_without_a_terminal():
    assert common._width(io.StringIO()) >= 200
    t = Table()
    for i in range(8):
        t.add_column(f"ssam-base+hubert-base model {i}")
    t.add_row(*[f"{90 + i}.00 ± 1.00 / 88.00 ± 2.00" for i in range(8)])
    with common.err.capture() as cap:
        common.err.print(t)
    assert "…" not in cap.get() and "ssam-base+hubert-base model 7" in cap.get()


def test_interrupt_message_names_what_resumes():
    """Ctrl-C said "resume where supported" (issue 20, item 17): say which commands resume."""
    from parrot_ser.cli.common import interrupt_message

    assert "resume: committed chunks" in interrupt_message("extract")
    assert "resume: finished folds" in interrupt_message("train")
    assert "does not resume" in interrupt_message("export") and "extract, train, grid and demo" in \
        interrupt_message("predict")


def test_grid_progress_lines_count_whole_cells_and_end_with_the_last_cell():
    """Issue 20, item 14: `grid cells: 0.0666667/2 (3%)`, a wild ETA from the first seconds, and a
    final line naming a cell that was not the last to finish."""
    buf = io.StringIO()
    clock = Clock()
    p = common.PlainProgress(console=Console(file=buf, width=200), interval=0.0, get_time=clock, upper_eta=True)
    grid = p.add_task("grid cells", total=2, rate="")
    share = _GridProgress(p, grid)
    a = share.add_task(_task_name("cnn", ["logmel"]), total=15, rate="")
    b = share.add_task(_task_name("fcn", ["logmel"]), total=15, rate="")
    clock.t += 1.0
    share.advance(a, 0.5)  # 1.7 % of the grid: no ETA yet
    clock.t += 9.0
    share.advance(a, 7.0)
    share.advance(a, 7.5)
    share.advance(b, 15)  # b's epochs are all done before a's cell is finished
    share.cell_done(_task_name("fcn", ["logmel"]), rate="logmel/fcn: 50.00")
    share.cell_done(_task_name("cnn", ["logmel"]), rate="logmel/cnn: 60.00")
    lines = [ln for ln in buf.getvalue().splitlines() if ln.startswith("grid cells")]
    assert lines[0].startswith("grid cells: 0/2 (2%)") and lines[0].endswith("eta ?")
    assert all(re.match(r"grid cells: \d/2 \(\d+%\)", ln) for ln in lines)
    assert all("2/2" not in ln for ln in lines[:-1]) and lines[-1].startswith("grid cells: 2/2 (100%) logmel/cnn")
    assert lines[-1].endswith("done")
    epochs = [ln for ln in buf.getvalue().splitlines() if ln.startswith("cnn")]
    assert any("eta <= 0:00:" in ln for ln in epochs)  # early stopping can only shorten an epoch ETA
