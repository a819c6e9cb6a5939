"""huracan.progress: silent off a terminal, a rich bar with the right total on one."""

from __future__ import annotations

import io
import multiprocessing

import pytest
from rich.console import Console

from huracan import progress


def forced() -> tuple[Console, io.StringIO]:
    """A rich console that believes it is a terminal, writing to a string."""
    out = io.StringIO()
    return Console(file=out, force_terminal=True, width=100, color_system=None), out


@pytest.fixture(autouse=True)
def _progress_on(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(progress.ENV, raising=False)


def test_silent_when_stderr_is_not_a_terminal(capsys: pytest.CaptureFixture[str]) -> None:
    items = [1, 2, 3]
    assert not progress.enabled()  # pytest's captured stderr is no terminal
    assert progress.track(items, "folds") is items  # no wrapper at all
    with progress.bar("steps", total=3) as b:
        assert not b.shown
        b.advance()
        b.update(2)
    assert sum(progress.track(iter(items), "folds")) == 6
    captured = capsys.readouterr()
    assert captured.err == "" and captured.out == ""


def test_silent_when_turned_off_even_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    console, out = forced()
    monkeypatch.setenv(progress.ENV, "0")
    assert not progress.enabled(console)
    assert list(progress.track(range(4), "folds", console=console)) == [0, 1, 2, 3]
    with progress.bar("steps", total=2, console=console) as b:
        assert not b.shown
    assert out.getvalue() == ""


def test_track_shows_a_bar_with_the_length_as_total() -> None:
    console, out = forced()
    seen = []
    for fold in progress.track(["a", "b", "c"], "walk-forward folds", console=console):
        seen.append(fold)
    assert seen == ["a", "b", "c"]
    text = out.getvalue()
    assert "walk-forward folds" in text
    assert "3/3" in text and "4/" not in text


def test_bar_counts_updates_against_its_total() -> None:
    console, out = forced()
    with progress.bar("PPO timesteps", total=1000, console=console) as b:
        assert b.shown
        b.update(400)
        b.advance(200)
    text = out.getvalue()
    assert "PPO timesteps" in text and "600/1000" in text and "1000/1000" not in text


def test_nested_bars_share_one_display_and_the_inner_one_goes() -> None:
    console, out = forced()
    with progress.bar("Optuna trials", total=2, console=console) as outer:
        for _ in range(2):
            # the inner bar needs no console: it joins the display already shown
            assert list(progress.track(range(3), "walk-forward folds")) == [0, 1, 2]
            assert len(progress._shown.tasks) == 1  # type: ignore[union-attr]
            outer.advance()
    assert progress._shown is None
    text = out.getvalue()
    assert "Optuna trials" in text and "2/2" in text


def test_optuna_callback_advances_once_per_trial() -> None:
    optuna = pytest.importorskip("optuna")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    console, out = forced()
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    with progress.bar("Optuna trials", total=4, console=console) as b:
        study.optimize(lambda t: t.suggest_float("x", 0.0, 1.0), n_trials=4,
                       callbacks=[progress.optuna_callback(b)])
    assert "4/4" in out.getvalue()


def _worker_enabled(_: int) -> bool:
    return progress.enabled(Console(file=io.StringIO(), force_terminal=True))


def test_worker_processes_stay_quiet() -> None:
    assert progress.enabled(forced()[0])
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        assert pool.map(_worker_enabled, [0]) == [False]
