"""Progress of a step over the sources of a visit: log lines, a terminal bar, a summary.

A 200-source visit keeps ``trace_fit`` busy for minutes.  `Progress` logs how
far it got and how long the rest should take, at each tenth of the sources and
at least every ``interval`` seconds, and draws a bar on a terminal.  A step
that is done in a second says nothing until its summary.  The bar is
written to the stream only when it is a terminal (never into a log file or a
CI log); log lines go through `logging` as every other line of the package.
"""

import logging
import os
import sys
import time

__all__ = ["Progress", "StepProgress", "Tally", "format_seconds", "wants_bar"]

log = logging.getLogger(__name__)

_BAR_WIDTH = 24
#: seconds between two redraws of the bar (a redraw per source is too many on 1,000 sources)
_REDRAW = 0.2
#: seconds since the last line below which a tenth passed is not worth a line
_QUIET = 1.0


def format_seconds(seconds):
    """A duration for people: ``0.4 s``, ``12 s``, ``3.5 min``."""
    if seconds < 10:
        return f"{seconds:.1f} s"
    if seconds < 120:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.1f} min"


def wants_bar(stream):
    """Whether ``stream`` is a terminal a bar may be drawn on.

    Not in CI (``CI`` set) or on a ``dumb`` terminal, where carriage returns
    are not honoured; not on a closed or redirected stream.
    """
    if os.environ.get("CI") or os.environ.get("TERM") == "dumb":
        return False
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or closed
        return False


class Progress:
    """Count the sources a step has done and say how long the rest will take.

    Parameters
    ----------
    name : str
        The step, first word of every line (``trace_fit``).
    total : int
        Sources to do.
    noun : str, optional
        What is counted (``sources``, ``slits``).
    logger : logging.Logger, optional
        Where the lines go (default: this module's).
    stream : file-like, optional
        Where a bar may be drawn (default: `sys.stderr` at creation).
    interval : float, optional
        Longest silence, seconds, between two progress lines.
    quiet : float, optional
        Shortest time, seconds, between two lines (default 1 s).
    clock : callable, optional
        Seconds, for tests (default `time.monotonic`).
    """

    def __init__(
        self,
        name,
        total,
        *,
        noun="sources",
        logger=None,
        stream=None,
        interval=10.0,
        quiet=None,
        clock=None,
    ):
        self.name, self.total, self.noun = name, int(total), noun
        self.done = 0
        self._log = logger or log
        self._clock = clock or time.monotonic
        self._interval = interval
        self._quiet = _QUIET if quiet is None else quiet
        self._start = self._last_line = self._last_draw = self._clock()
        self._tenths = 0
        self._stream = sys.stderr if stream is None else stream
        self._bar = self.total > 0 and wants_bar(self._stream)
        if self._bar:
            self._draw()

    @property
    def elapsed(self):
        """Seconds since the start."""
        return self._clock() - self._start

    def each(self, items):
        """Yield ``items``, counting one done each time the next is asked for.

        The bar is cleared when the iteration ends, also on an error.
        """
        try:
            for item in items:
                yield item
                self.advance()
        finally:
            self.close()

    def advance(self):
        """Count one more source done; log a line or redraw the bar if it is time."""
        self.done += 1
        now = self._clock()
        tenths = self.done * 10 // max(self.total, 1)
        # the last source is said by the step's summary line, not here
        since = now - self._last_line
        due = (tenths > self._tenths and since >= self._quiet) or since >= self._interval
        if self.done < self.total and due:
            self._tenths, self._last_line = tenths, now
            self._log.info("%s", self.line())
        if self._bar and (now - self._last_draw >= _REDRAW or self.done >= self.total):
            self._last_draw = now
            self._draw()

    def line(self):
        """``trace_fit: 20/200 sources, 12 s elapsed, ~108 s left``."""
        elapsed = self.elapsed
        text = f"{self.name}: {self.done}/{self.total} {self.noun}, "
        text += f"{format_seconds(elapsed)} elapsed"
        if 0 < self.done < self.total:
            left = elapsed / self.done * (self.total - self.done)
            text += f", ~{format_seconds(left)} left"
        return text

    def summary(self, done, seen, verb, seconds=None):
        """The step's last line: ``trace_fit: 198 of 200 sources fitted, 2 skipped, 95 s``.

        ``seconds`` is the time said (default: since the start).
        """
        seconds = self.elapsed if seconds is None else seconds
        return (
            f"{self.name}: {done} of {seen} {self.noun} {verb}, {seen - done} skipped, "
            f"{format_seconds(seconds)}"
        )

    def close(self):
        """Clear the bar from the terminal line (log lines continue on a clean line)."""
        if self._bar:
            self._write("\r\033[K")
            self._bar = False

    def _draw(self):
        filled = round(_BAR_WIDTH * self.done / self.total)
        bar = "#" * filled + "." * (_BAR_WIDTH - filled)
        # back to column 0 afterwards: the next log line overwrites the bar
        self._write(f"\r{self.name} [{bar}] {self.line().split(': ', 1)[1]}\033[K\r")

    def _write(self, text):
        try:
            self._stream.write(text)
            self._stream.flush()
        except (OSError, ValueError):  # a terminal gone away: no bar, the work goes on
            self._bar = False


class Tally:
    """A step's progress, counts and own time over several runs of it (the parts of a visit).

    Parameters
    ----------
    progress : Progress
        Over the whole visit.
    """

    def __init__(self, progress):
        self.progress = progress
        self.done = self.seen = 0
        self.verb, self.seconds = "", 0.0

    def each(self, items):
        """Yield ``items``, advancing the visit's progress (never closing it)."""
        for item in items:
            yield item
            self.progress.advance()

    def add(self, counts, verb, seconds):
        """Add one run: ``(done, seen)`` sources, what was done, its seconds."""
        self.done += counts[0]
        self.seen += counts[1]
        self.verb, self.seconds = verb, self.seconds + seconds

    def close(self):
        """The summary line over the runs (None if no run counted); the bar cleared."""
        self.progress.close()
        if not self.verb:
            return None
        return self.progress.summary(self.done, self.seen, self.verb, self.seconds)


class StepProgress:
    """A step's progress over its sources and its last line (mixed into the package's steps).

    The step has a ``class_alias``; ``_run_start`` is set when its run starts.
    """

    #: progress and counts over the parts of a visit (`start_tally`), or None
    _tally = None

    def track(self, items, noun="sources"):
        """Iterate over the step's sources, logging progress (`nodcombine.progress.Progress`).

        Parameters
        ----------
        items : iterable
            The sources (groups, families or slits), one at a time to
            `per_source`.
        noun : str, optional
            What they are called in the log.

        Returns
        -------
        iterator
            ``items``; each request for the next counts the previous one done.
        """
        if self._tally is not None:
            return self._tally.each(items)
        items = list(items)
        self._progress = Progress(self.class_alias, len(items), noun=noun)
        return self._progress.each(items)

    def start_tally(self, total, noun="sources"):
        """Count this step's sources over several runs (a visit reduced part by part).

        Until `end_tally`, `track` advances one progress over the whole visit
        and `log_summary` adds up instead of logging a line per run.
        """
        self._tally = Tally(Progress(self.class_alias, total, noun=noun))

    def end_tally(self):
        """Log the step's summary over the runs since `start_tally`: its counts, its own time."""
        tally, self._tally = self._tally, None
        line = tally.close()
        if line:
            log.info("%s", line)

    def log_summary(self, counts, done):
        """Log the step's last line (`summary`), or add ``counts`` to the visit's tally."""
        if self._tally is None:
            log.info("%s", self.summary(counts, done))
        else:
            self._tally.add(counts, done, time.monotonic() - self._run_start)

    def summary(self, counts, done):
        """The step's last line: ``trace_fit: 9 of 10 sources fitted, 1 skipped, 12 s``.

        Parameters
        ----------
        counts : tuple of (int, int)
            Sources done, sources seen.
        done : str
            What was done to them (``fitted``).

        Returns
        -------
        str
            With the time since the step's run started.
        """
        progress = getattr(self, "_progress", None) or Progress(self.class_alias, counts[1])
        start = getattr(self, "_run_start", None)
        seconds = None if start is None else time.monotonic() - start
        return progress.summary(*counts, done, seconds)
