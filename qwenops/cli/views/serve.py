"""The live view of a supervised server on stderr: state changes, start-up phases, the server's output.

On a terminal a transient rich progress line shows the phase with a running clock while vLLM loads;
elsewhere (journald, docker logs, a pipe) each phase change is one plain line, so logs stay greppable.
stdout is left alone: it carries only the final result (or the one JSON envelope with --json).
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from qwenops.supervisor.bootlog import Phase
from qwenops.supervisor.states import State

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress, TaskID

    from qwenops.serve.run import ServePlan, ServeResult
    from qwenops.supervisor.runner import Transition

_STYLE = {State.RUNNING: "green", State.FATAL: "bold red", State.BACKOFF: "yellow", State.EXITED: "yellow"}


class ConsoleReporter:
    """Observer and line echo in one. server_line runs on the output pump's thread while
    on_transition/on_phase run on the supervising thread and start and stop the live progress
    line, so every method holds one lock: a server line never lands mid-way through a progress
    start or stop."""

    def __init__(self, console: Console | None = None, *, echo_server: bool = True) -> None:
        from qwenops.cli.output import stderr_console

        self.console = console or stderr_console()
        self.echo_server = echo_server
        self._progress: Progress | None = None
        self._task: TaskID | None = None
        self._lock = threading.RLock()

    def on_transition(self, change: Transition) -> None:
        with self._lock:
            self._on_transition(change)

    def _on_transition(self, change: Transition) -> None:
        if change.target is not State.STARTING:
            self._end_progress()
        style = _STYLE.get(change.target, "bold")
        from rich.markup import escape

        self.console.print(
            f"[dim]qwenops[/] {change.source.value} → [{style}]{change.target.value}[/] {escape(change.reason)}"
        )
        if change.target is State.STARTING:
            self._begin_progress()

    def on_phase(self, phase: Phase, elapsed_s: float) -> None:
        with self._lock:
            self._on_phase(phase, elapsed_s)

    def _on_phase(self, phase: Phase, elapsed_s: float) -> None:
        if self._progress is not None and self._task is not None:
            self._progress.update(self._task, description=f"vLLM starting: {phase.value}")
        else:
            self.console.print(f"[dim]qwenops[/] starting: {phase.value} ({elapsed_s:.1f} s)")

    def on_note(self, text: str) -> None:
        with self._lock:
            self._end_progress()
            from rich.markup import escape

            self.console.print(f"[dim]qwenops[/] [bold]{escape(text)}[/]")

    def server_line(self, line: str) -> None:
        if not self.echo_server:
            return
        from rich.text import Text

        # Through the same console, so the live progress line stays below the server's output.
        with self._lock:
            self.console.print(Text(line), highlight=False)

    def close(self) -> None:
        with self._lock:
            self._end_progress()

    def _begin_progress(self) -> None:
        if not self.console.is_terminal:
            return
        from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

        self._progress = Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(),
                                  console=self.console, transient=True)
        self._task = self._progress.add_task(f"vLLM starting: {Phase.LAUNCHING.value}")
        self._progress.start()

    def _end_progress(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
            self._task = None


def serve_plan_view(plan: ServePlan) -> str:
    """`serve --dry-run`: the environment additions, then the command, shell-quoted."""
    import shlex

    from qwenops.untrusted import masked_env

    lines = [f"# profile {plan.profile}: {plan.base_url} serving {plan.served_model_name!r}; log {plan.log_file}"]
    if plan.builds_tiny_model:
        lines.append(f"# first builds the tiny model into {plan.model_path}")
    lines += [f"{key}={shlex.quote(value)} \\" for key, value in masked_env(plan.env).items()]
    lines.append(shlex.join(plan.argv))
    return "\n".join(lines)


def serve_result_view(result: ServeResult) -> str:
    fitted = "".join(f"\n  auto-fit: {f.field} {f.old} -> {f.new} ({f.category}); saved as {f.saved_profile}"
                     for f in result.fits)
    if result.ok:
        return f"{result.state}: {result.reason} ({result.restarts} restarts){fitted}"
    text = f"{result.state}: {result.reason}"
    if result.cause is not None:
        text = (f"{result.state}: {result.cause.category}: {result.cause.title}\n  log: {result.cause.line}\n"
                f"  fix: {result.cause.fix}")
        if result.cause.set_flags and not result.fits:
            text += f"\n  auto-fit would apply: {result.cause.set_flags} (serve --auto-fit does it and starts again)"
    return f"{text}{fitted}\n  full log: {result.log_file}"
