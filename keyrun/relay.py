"""Masking relay: keyrun stays the parent and filters the command's output (SPEC §5).

``relay(argv, env, masks, supervisor)`` runs the command as keyrun's child and passes its
stdout and stderr, each through its own ``Masker``, to keyrun's stdout and stderr, then
exits as the command did.

- keyrun's stdout is a terminal: the command runs on a pseudo-terminal that keyrun
  relays, so it sees a TTY (colours, prompts, REPLs and TUIs work). Its stderr shares
  the pseudo-terminal when keyrun's stderr is a terminal too (the order of the two is
  kept, as on a terminal), and is a pipe otherwise. When keyrun's stdin is the terminal,
  it is put in raw mode and relayed to the command while keyrun is the terminal's
  foreground job (checked again whenever keyrun is continued, and every
  ``FOREGROUND_POLL`` while in the background: ``fg`` of a running job sends no signal);
  raw mode is undone on every way out. The window size is copied at start, on SIGWINCH
  and on coming to the foreground. The command runs in its own process group under a
  small session leader (``_monitor``), as under a shell, so Ctrl-Z stops it; keyrun then
  gives its terminal back and stops as a job, and continues the command when it is
  itself continued.
- Otherwise: two pipes, and stdin is inherited directly.

Each of keyrun's outputs is written by a thread of its own (``_Output``): a reader slower
than the command holds back only that output; the command's pipe to it is then not read
until there is room (memory stays bounded), and the other output flows on.

Signals follow "Staying the parent": SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1/2 and
SIGWINCH are forwarded, but a signal that the terminal already sent to the command's
process group is not sent twice; keyrun exits with the command's status or dies of the
same signal. A thread waits for signals (``sigwaitinfo`` tells who sent one) so that the
output loop never misses one.

A held prefix (``Masker``) is released, at most its first ``RELEASE`` bytes, once its
stream has been quiet for ``RELEASE_AFTER`` with nothing left to read.

keyrun ends with the command. Leases are released as soon as it has ended (SPEC: revoked
when it ends). What it wrote before it ended (what was unread then: ``FIONREAD``) is
relayed whole; after that an output is read only until it has been quiet for
``LEFTOVER_QUIET`` (``TERMINAL_LEFTOVER_QUIET``: a pseudo-terminal hands over its last
bytes a little late), at most ``LEFTOVER_LIMIT`` after the end: a process the command left
in the background is not waited for, and finds the pipe closed when it writes later. When
keyrun itself was told to end (SIGINT, SIGTERM, SIGHUP, SIGQUIT) it stops ``SIGNAL_GRACE``
after the command ended, or after the signal came, whichever is later.
"""

from __future__ import annotations

import atexit
import contextlib
import errno
import fcntl
import itertools
import os
import select
import selectors
import signal
import sys
import termios
import threading
import time
import tty
from collections import deque
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple, NoReturn

from keyrun.errors import LaunchError
from keyrun.launch import (
    FORWARDED,
    PYTHON_IGNORED,
    SENT_BY_PROCESS,
    Supervisor,
    close_actions,
    die_with,
    exec_or_report,
    exit_like,
    find_program,
    launch_error,
    make_undumpable,
    read_all,
    restore_signals,
    spawn,
)
from keyrun.mask import Masker, MaskSet, Piece

RELEASE_AFTER = 0.03  # seconds of silence before a held prefix's first bytes are let out
SUSPEND_DRAIN = 1.0  # on Ctrl-Z, wait at most this long for keyrun's outputs to take what is left
# ...after reading the command's outputs until they are this quiet: the terminal writes its
# echo of ^Z after the signal that stopped the command
SUSPEND_QUIET = 0.03
FOREGROUND_POLL = 0.2  # in the background, look this often whether keyrun is in front again
# After the command ended: what it wrote is relayed whole; then an output is closed once it
# has been quiet this long (a pseudo-terminal may hand over its last bytes a little late)...
LEFTOVER_QUIET = 0.05
TERMINAL_LEFTOVER_QUIET = 0.2
LEFTOVER_LIMIT = 1.0  # ...or this long after the command ended, however chatty what it left
SIGNAL_GRACE = 0.3  # keyrun was told to end and the command has: drain at most this long
READ_SIZE = 1 << 20  # from a pipe; a terminal gives at most a few KiB per read
OUTPUT_QUEUE = 1 << 20  # bytes waiting for keyrun's stdout (or stderr) before it stops reading
TERMINAL_READ_SIZE = 1 << 16
PIPE_SIZE = 1 << 20  # fewer wake-ups for a command that prints a lot (Linux)
_TERMINATING = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT}


class NoLeases:
    """The supervisor of a run that has nothing to renew or revoke."""

    def first_renewal(self) -> float | None:
        return None

    def renew(self) -> float | None:
        return None

    def release(self) -> None:
        return None


def relay(argv: Sequence[str], env: Mapping[str, str], masks: MaskSet,
          supervisor: Supervisor | None = None) -> NoReturn:
    """Run the command with its output masked, then exit as it did (status, or the same
    signal). Returns only by raising ``LaunchError`` (command not found or not runnable),
    after releasing the supervisor's leases."""
    keeper = _ReleaseOnce(supervisor or NoLeases())
    watched = {getattr(signal, name) for name in FORWARDED if hasattr(signal, name)}
    watched.add(signal.SIGCHLD)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)  # an inherited SIG_IGN would reap it for us
    try:
        program = find_program(argv[0], env)
        make_undumpable()
        signal.pthread_sigmask(signal.SIG_BLOCK, watched)
        child = _spawn(program, argv, env, watched)
    except (LaunchError, OSError) as exc:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, watched)
        keeper.release()
        error = exc if isinstance(exc, LaunchError) else launch_error(argv[0], exc, program, env)
        raise _masked_error(error, masks) from None
    raw = _RawMode(0) if child.keyboard else None
    if child.keyboard:
        # Keys read from the background fail with EIO instead of stopping keyrun, and a
        # continued keyrun (fg, bg) learns whether it is in the foreground now.
        signal.signal(signal.SIGTTIN, signal.SIG_IGN)
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGCONT})
        watched = watched | {signal.SIGCONT}
    try:
        status = _Loop(child, masks, keeper, watched, raw).run()
    finally:
        if raw is not None:
            raw.restore()
        keeper.release()
    exit_like(status)


class _ReleaseOnce:
    """The supervisor, released once: as soon as the command has ended, and on every
    other way out (a launch error, a crash of the relay)."""

    def __init__(self, supervisor: Supervisor) -> None:
        self.supervisor = supervisor
        self.released = False

    def first_renewal(self) -> float | None:
        return None if self.released else self.supervisor.first_renewal()

    def renew(self) -> float | None:
        return None if self.released else self.supervisor.renew()

    def release(self) -> None:
        if not self.released:
            self.released = True
            self.supervisor.release()


def _masked_error(error: LaunchError, masks: MaskSet) -> LaunchError:
    """The error with every value masked: it quotes the command's name, which may be a
    secret (``--allow-argv-secrets``), and keyrun's own messages are output too."""
    def mask(text: str) -> str:
        masked = masks.mask(text.encode("utf-8", "surrogateescape"))
        return masked.decode("utf-8", "surrogateescape")

    return LaunchError(mask(error.message), error.exit_code,
                       None if error.hint is None else mask(error.hint))


# Starting the command ------------------------------------------------------------------


class _Child(NamedTuple):  # not a dataclass: importing dataclasses costs 10 ms a start
    pid: int  # on a pseudo-terminal: the session leader that ends as the command ends
    outputs: list[tuple[int, int]]  # (fd keyrun reads, keyrun's fd it goes to)
    terminal: int | None = None  # the pseudo-terminal's master side
    keyboard: bool = False  # keyrun's stdin is the terminal: relayed while in the foreground
    post_processing: bool = False  # the pseudo-terminal turns \n into \r\n (OPOST)


def _spawn(program: str, argv: Sequence[str], env: Mapping[str, str],
           watched: set[int]) -> _Child:
    if os.isatty(1):
        try:
            master, slave = os.openpty()
        except OSError:
            pass  # no pseudo-terminal to be had: pipes still mask
        else:
            return _spawn_on_terminal(program, argv, env, master, slave, watched)
    defaults = watched | {getattr(signal, name) for name in PYTHON_IGNORED}
    return _spawn_with_pipes(program, argv, env, defaults)


def _spawn_with_pipes(program: str, argv: Sequence[str], env: Mapping[str, str],
                      defaults: set[int]) -> _Child:
    outputs, write_ends = [], []
    actions = close_actions(keep=(1, 2))
    for target in (1, 2):
        read_end, write_end = os.pipe()
        _enlarge_pipe(read_end)
        outputs.append((read_end, target))
        write_ends.append(write_end)
        actions.append((os.POSIX_SPAWN_DUP2, write_end, target))
    try:
        pid = spawn(program, argv, env, file_actions=actions, setsigdef=defaults)
    except OSError:
        for fd, _target in outputs:
            os.close(fd)
        raise
    finally:
        for fd in write_ends:
            os.close(fd)
    return _Child(pid, outputs)


def _enlarge_pipe(fd: int) -> None:
    setting = getattr(fcntl, "F_SETPIPE_SZ", None)
    if setting is not None:
        with contextlib.suppress(OSError):
            fcntl.fcntl(fd, setting, PIPE_SIZE)


def _spawn_on_terminal(program: str, argv: Sequence[str], env: Mapping[str, str],
                       master: int, slave: int, watched: set[int]) -> _Child:
    foreground = _owns_keyboard()
    _copy_terminal(slave, foreground)
    # A terminal keyrun does not own (it runs in the background) is not handed over: the
    # command reads its pseudo-terminal, rather than compete with the shell for keys.
    stdin = None if os.isatty(0) else _dup_or_none(0)
    stderr_read, stderr_write = (None, None) if os.isatty(2) else os.pipe()
    report_read, report_write = os.pipe()
    keyrun = os.getpid()
    pid = os.fork()
    if pid == 0:
        die_with(keyrun)
        _start_on_terminal(program, argv, env, slave, stdin, stderr_write, report_write, watched)
    for fd in (slave, stdin, stderr_write, report_write):
        if fd is not None:
            os.close(fd)
    failure = read_all(report_read)
    if failure:
        os.waitpid(pid, 0)
        for fd in (master, stderr_read):
            if fd is not None:
                os.close(fd)
        code = int(failure)
        raise OSError(code, os.strerror(code))
    os.set_blocking(master, False)
    outputs = [(master, 1)] if stderr_read is None else [(master, 1), (stderr_read, 2)]
    return _Child(pid, outputs, terminal=master, keyboard=os.isatty(0),
                  post_processing=foreground)


def _start_on_terminal(program: str, argv: Sequence[str], env: Mapping[str, str], slave: int,
                       stdin: int | None, stderr: int | None, report: int,
                       watched: set[int]) -> NoReturn:
    """In the forked child: become a session on the pseudo-terminal and start the command
    in its own process group there, then stand between it and keyrun (``_monitor``).

    Job control needs this middle process, as a shell is: a process group whose members
    have no parent in the same session but in another group is orphaned, and the kernel
    discards Ctrl-Z's SIGTSTP for it. Never returns to keyrun's code, whatever happens."""
    try:
        os.login_tty(slave)  # new session, controlling terminal, fds 0-2
        if stdin is not None:
            os.dup2(stdin, 0)
        if stderr is not None:
            os.dup2(stderr, 2)
        os.closerange(3, report)
        os.closerange(report + 1, _MAX_FD)
        monitor = os.getpid()
        command = os.fork()
        if command == 0:
            die_with(monitor)
            _exec_in_foreground(program, argv, env, report)
        os.close(report)
        with contextlib.suppress(OSError):
            os.setpgid(command, command)
        _monitor(command, watched)
    except BaseException:
        with contextlib.suppress(OSError):
            os.write(report, str(errno.EIO).encode())
    finally:
        os._exit(127)


_MAX_FD = 1 << 20


def _exec_in_foreground(program: str, argv: Sequence[str], env: Mapping[str, str],
                        report: int) -> NoReturn:
    """In the command's process: its own process group, in the terminal's foreground."""
    exec_or_report(program, argv, env, report, _take_foreground)


def _take_foreground() -> None:
    os.setpgid(0, 0)
    signal.signal(signal.SIGTTOU, signal.SIG_IGN)  # a background group may take it so
    os.tcsetpgrp(1, os.getpid())  # fd 1 is always the pseudo-terminal here
    signal.signal(signal.SIGTTOU, signal.SIG_DFL)
    restore_signals()


def _monitor(command: int, watched: set[int]) -> NoReturn:
    """The session leader between keyrun and the command: passes keyrun's signals on,
    stops when the command stops (keyrun sees that, and continues this process when it
    is itself continued), and ends as the command ended."""
    while True:
        number = signal.sigwaitinfo(watched).si_signo
        if number != signal.SIGCHLD:
            with contextlib.suppress(ProcessLookupError):
                os.kill(command, number)
            continue
        pid, status = os.waitpid(command, os.WNOHANG | os.WUNTRACED)
        if pid != command:
            continue
        if not os.WIFSTOPPED(status):
            _end_like(status)
        os.kill(os.getpid(), signal.SIGSTOP)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(command, signal.SIGCONT)


def _end_like(status: int) -> NoReturn:
    """``exit_like`` for the forked monitor, which must not flush keyrun's buffers."""
    if os.WIFSIGNALED(status):
        import resource

        number = os.WTERMSIG(status)
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        with contextlib.suppress(OSError, ValueError):
            signal.signal(number, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_SETMASK, [])
        os.kill(os.getpid(), number)
    os._exit(os.waitstatus_to_exitcode(status))


def _owns_keyboard() -> bool:
    """keyrun's stdin is a terminal and keyrun is in its foreground (reading it from the
    background would stop keyrun with SIGTTIN)."""
    return os.isatty(0) and _in_foreground(0)


def _in_foreground(fd: int) -> bool:
    try:
        return os.tcgetpgrp(fd) == os.getpgrp()
    except OSError:
        return False


def _dup_or_none(fd: int) -> int | None:
    try:
        return os.dup(fd)
    except OSError:
        return None


def _copy_terminal(slave: int, raw: bool) -> None:
    """The pseudo-terminal starts with the settings and size of keyrun's terminal.

    Output post-processing (``\n`` to ``\r\n``) happens once: on the pseudo-terminal
    when keyrun's terminal will be raw, on keyrun's terminal otherwise. A terminal whose
    foreground is another job (keyrun started with ``&``) is likely in the mode of the
    shell's line editor: the line discipline it turns off is turned on again."""
    source = 0 if os.isatty(0) else 1
    with contextlib.suppress(termios.error):
        settings = termios.tcgetattr(source)
        if not raw:
            settings[1] &= ~termios.OPOST
        if not _in_foreground(source):
            settings[0] |= termios.ICRNL
            settings[3] |= termios.ICANON | termios.ECHO | termios.ISIG | termios.IEXTEN
        termios.tcsetattr(slave, termios.TCSANOW, settings)
    copy_window_size(slave)


def copy_window_size(target: int) -> bool:
    """Give ``target`` the size of keyrun's terminal; True when it changed."""
    empty = bytes(8)
    try:
        size = fcntl.ioctl(1, termios.TIOCGWINSZ, empty)
        if fcntl.ioctl(target, termios.TIOCGWINSZ, empty) == size:
            return False
        fcntl.ioctl(target, termios.TIOCSWINSZ, size)
    except OSError:
        return False
    return True


class _RawMode:
    """keyrun's terminal in raw mode while relaying: keys, Ctrl-C included, go to the
    command's pseudo-terminal, whose own line discipline interprets them."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.saved: list[Any] | None = None
        atexit.register(self.restore)

    def enter(self) -> None:
        """Raw mode; again after a stop, when a shell may have set its own mode meanwhile
        (the mode to restore stays the one keyrun found)."""
        if self.saved is None:
            self.saved = termios.tcgetattr(self.fd)
        tty.setraw(self.fd, termios.TCSANOW)

    def restore(self) -> None:
        """The mode keyrun found, unless keyrun is in the background now: the terminal is
        the shell's then (and setting it would stop keyrun with SIGTTOU)."""
        saved, self.saved = self.saved, None
        if saved is not None and _owns_keyboard():
            with contextlib.suppress(termios.error):
                termios.tcsetattr(self.fd, termios.TCSADRAIN, saved)


def _post_process(terminal: int) -> None:
    """Output post-processing on the pseudo-terminal (set through its master side), for
    keyrun's terminal in raw mode does none."""
    with contextlib.suppress(termios.error):
        settings = termios.tcgetattr(terminal)
        settings[1] |= termios.OPOST
        termios.tcsetattr(terminal, termios.TCSANOW, settings)


# Signals -------------------------------------------------------------------------------


class _Signals(threading.Thread):
    """Waits for the watched signals and forwards them, without the output loop's help.

    A terminal's signals reach the command by themselves when it shares keyrun's process
    group (pipes); on a pseudo-terminal the command has its own session, so every signal
    keyrun gets is passed on, and SIGWINCH becomes a new window size."""

    def __init__(self, watched: set[int], pid: int, terminal: int | None, wake: int) -> None:
        super().__init__(name="keyrun:signals", daemon=True)
        self.watched = watched
        self.pid = pid
        self.terminal = terminal
        self.wake = wake
        self.lock = threading.Lock()
        self.reaped = False
        self.stopping = False
        self.told_to_end = False  # keyrun got SIGINT, SIGTERM, SIGHUP or SIGQUIT

    def run(self) -> None:
        while True:
            info = signal.sigwaitinfo(self.watched)
            if self.stopping:
                return
            if info.si_signo in (signal.SIGCHLD, signal.SIGCONT):
                self._poke(b"c" if info.si_signo == signal.SIGCHLD else b"k")
                continue
            with self.lock:
                if info.si_signo in _TERMINATING:
                    self.told_to_end = True
                if self.reaped:
                    if info.si_signo in _TERMINATING:
                        self._poke(b"s")  # stop waiting for what lingers after the command
                    continue
                self._forward(info.si_signo, info.si_code in SENT_BY_PROCESS)

    def _forward(self, number: int, sent: bool) -> None:
        if self.terminal is None:
            if not sent:
                return  # the terminal sent it to the command's process group too
        elif number == signal.SIGWINCH and (copy_window_size(self.terminal) or not sent):
            return  # the pseudo-terminal signals its foreground process group itself
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, number)

    def _poke(self, what: bytes) -> None:
        with contextlib.suppress(OSError):
            os.write(self.wake, what)

    def ending(self) -> bool:
        with self.lock:
            return self.told_to_end

    def reap(self) -> int | None:
        """The command's wait status once it has ended (it is then never signalled), or
        once it has stopped on its pseudo-terminal (``os.WIFSTOPPED``)."""
        # On pipes the command shares keyrun's process group: Ctrl-Z stops both at once.
        stops = os.WUNTRACED if self.terminal is not None else 0
        with self.lock:
            pid, status = os.waitpid(self.pid, os.WNOHANG | stops)
            if pid != self.pid:
                return None
            self.reaped = not os.WIFSTOPPED(status)
            return status

    def stop(self) -> None:
        self.stopping = True
        if self.ident is not None and self.is_alive():
            with contextlib.suppress(OSError):
                signal.pthread_kill(self.ident, signal.SIGCHLD)
            self.join(1)


# The loop ------------------------------------------------------------------------------


class _Output(threading.Thread):
    """keyrun's stdout or stderr, written by a thread of its own, so that a reader slower
    than the command holds back only what goes to it: the other output flows on (stdout
    and stderr are filtered independently). The writes block in this thread: the flags of
    an fd that keyrun shares with others (a terminal, a file) are left as they are."""

    def __init__(self, fd: int, wake: int) -> None:
        super().__init__(name=f"keyrun:output{fd}", daemon=True)
        self.fd = fd
        self.wake = wake
        self.changed = threading.Condition()
        self.chunks: deque[tuple[Sequence[Piece], int]] = deque()  # pieces, their size
        self.queued = 0  # bytes handed over and not written yet
        self.broken = False
        self.closing = False
        self.awaited = False  # the loop stopped reading for this output until it has room

    def put(self, pieces: Sequence[Piece], size: int) -> None:
        with self.changed:
            if not self.broken:
                self.chunks.append((pieces, size))
                self.queued += size
                self.changed.notify_all()

    def full(self) -> bool:
        """Enough waits to be written that the command's output should wait in its pipe;
        the loop is then woken (``b"w"``) once there is room."""
        with self.changed:
            self.awaited = self.queued >= OUTPUT_QUEUE and not self.broken
            return self.awaited

    def run(self) -> None:
        while (chunk := self._next()) is not None:
            pieces, size = chunk
            try:
                _write_all(self.fd, pieces)
            except OSError:
                self._written(size, failed=True)
            else:
                self._written(size, failed=False)

    def _next(self) -> tuple[Sequence[Piece], int] | None:
        with self.changed:
            self.changed.wait_for(lambda: self.chunks or self.closing)
            return self.chunks.popleft() if self.chunks else None

    def _written(self, size: int, failed: bool) -> None:
        with self.changed:
            self.queued -= size
            if failed:
                self.broken = True
                self.chunks.clear()
                self.queued = 0
            tell = failed or (self.awaited and self.queued < OUTPUT_QUEUE)
            self.awaited = self.awaited and not tell
            self.changed.notify_all()
        if tell:
            with contextlib.suppress(OSError):  # a full wake pipe wakes the loop anyway
                os.write(self.wake, b"w")

    def drain(self, timeout: float | None = None) -> None:
        """Wait until everything handed over is written (or cannot be)."""
        with self.changed:
            self.changed.wait_for(lambda: not self.queued or self.broken, timeout)

    def finish(self) -> None:
        with self.changed:
            self.closing = True
            self.changed.notify_all()
        if self.is_alive():
            self.join()


class _Stream:
    """One of the command's outputs: read, mask, hand to keyrun's own output."""

    def __init__(self, fd: int, output: _Output, masker: Masker, terminal: bool) -> None:
        self.fd = fd
        self.output = output
        self.masker = masker
        self.terminal = terminal
        self.release_at: float | None = None
        self.active_at = time.monotonic()  # when the last read was masked
        self.read_size = TERMINAL_READ_SIZE if terminal else READ_SIZE
        self.partner: _Stream | None = None  # the command's other output
        self.taken = 0  # bytes read so far
        self.owed: int | None = None  # what must be read before the stream may be closed

    def take(self) -> bytes | None:
        """What is readable: b"" at the end of the stream, None when nothing is ready."""
        data = self._read()
        if data and self.terminal:
            data = self._gather(data)
        if data:
            self.taken += len(data)
        return data

    def deliver(self, data: bytes) -> None:
        """Mask and hand over what was read."""
        self.emit(*self._mask(data))
        # Silence counts from here: masking a large read can take longer than RELEASE_AFTER
        # while the rest of a secret already waits in the pipe.
        self.active_at = time.monotonic()
        self.release_at = self.active_at + RELEASE_AFTER if self.masker.releasable else None

    def _gather(self, data: bytes) -> bytes:
        """A pseudo-terminal gives at most its line discipline's 4 KiB per read: take what
        is there, masked at once (joined once: bytes += would copy all so far each time)."""
        pieces, size = [data], len(data)
        while size < self.read_size and (more := self._read()):
            pieces.append(more)
            size += len(more)
        return b"".join(pieces)

    def _mask(self, data: bytes) -> list[Piece]:
        """The masked bytes; a value whose first part the other output holds back (the
        command wrote it split between stdout and stderr) is masked on each."""
        other = self.partner
        # Bytes the other output already let out still count: a value short enough that
        # a release showed all its first part is ended here all the same.
        if other is None or not other.masker.following:
            return self.masker.feed_parts(data)
        crossing = other.masker.continuation(data)
        if crossing is None:
            return self.masker.feed_parts(data)
        start, taken, index = crossing
        other.emit(other.masker.end_held(start, index))
        other.release_at = None
        return [self.masker.feed_continuing(data, taken, index)]

    def settle(self) -> None:
        """The command has ended: what it wrote is owed in full (what waits unread now)."""
        waiting = bytearray(4)
        try:
            fcntl.ioctl(self.fd, termios.FIONREAD, waiting)
        except OSError:
            waiting = bytearray(4)
        self.owed = self.taken + int.from_bytes(waiting, sys.byteorder)

    def settled(self) -> bool:
        return self.owed is not None and self.taken >= self.owed

    def over(self) -> bool:
        """False when keyrun's output went away. A reader that went away: stop reading, so
        the command gets SIGPIPE as it would have without keyrun. A terminal that went
        away: keep draining, SIGHUP follows."""
        return self.terminal or not self.output.broken

    def _read(self) -> bytes | None:
        """Some bytes; b"" at the end of the stream; None when nothing is ready."""
        try:
            return os.read(self.fd, self.read_size)
        except BlockingIOError:
            return None
        except OSError as exc:
            if exc.errno != errno.EIO:  # EIO: the pseudo-terminal has no process left
                raise
            return b""

    def release_due(self, now: float) -> bool:
        """The first bytes of a held prefix may be let out (a prompt may end there): the
        command has really been quiet for RELEASE_AFTER, with nothing waiting to be read."""
        return self.release_at is not None and now >= self.release_at and not _readable(self.fd)

    def release(self) -> None:
        self.release_at = None
        self.emit(self.masker.release())

    def finish(self) -> None:
        self.emit(self.masker.close())
        os.close(self.fd)

    def emit(self, *pieces: Piece) -> None:
        size = sum(map(len, pieces))
        if size:
            self.output.put(pieces, size)


def _readable(fd: int) -> bool:
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    return bool(poller.poll(0))


def _write_all(fd: int, pieces: Sequence[Piece]) -> None:
    """Write the pieces in order, in as few system calls as the kernel allows (writev:
    the masked text between labels is never copied into one buffer)."""
    pending = [memoryview(piece) for piece in pieces if len(piece)]
    first = 0
    while first < len(pending):
        try:
            written = os.writev(fd, pending[first:first + _IOV_MAX])
        except BlockingIOError:  # an fd left non-blocking by whoever shares it
            _wait_writable(fd)
            continue
        while written:
            size = len(pending[first])
            if written < size:
                pending[first] = pending[first][written:]
                break
            written -= size
            first += 1


_IOV_MAX = max(16, os.sysconf("SC_IOV_MAX")) if "SC_IOV_MAX" in os.sysconf_names else 16


def _wait_writable(fd: int) -> None:
    with selectors.DefaultSelector() as selector:
        selector.register(fd, selectors.EVENT_WRITE)
        selector.select()


class _Keyboard:
    """keyrun's stdin relayed to the pseudo-terminal, one bounded buffer at a time."""

    def __init__(self, terminal: int) -> None:
        self.terminal = terminal
        self.pending = b""
        self.open = True

    def read(self) -> bool:
        """Relay what was typed; False when keyrun is not in the terminal's foreground
        (SIGTTIN is ignored, so the read fails rather than stop keyrun)."""
        try:
            data = os.read(0, 4096)
        except OSError as exc:
            if exc.errno == errno.EIO and not _owns_keyboard():
                return False
            data = b""  # the terminal hung up
        if not data:
            self.open = False
        self.pending += data
        self.drain()
        return True

    def drain(self) -> None:
        try:
            written = os.write(self.terminal, self.pending)
        except BlockingIOError:
            return
        except OSError:
            written = len(self.pending)  # the command's terminal is gone
        self.pending = self.pending[written:]


class _Loop:
    def __init__(self, child: _Child, masks: MaskSet, keeper: Supervisor,
                 watched: set[int], raw: _RawMode | None = None) -> None:
        self.child = child
        self.raw = raw
        self.keeper = keeper
        self.selector = selectors.DefaultSelector()
        self.wake_read, self.wake_write = os.pipe()
        os.set_blocking(self.wake_write, False)
        self.signals = _Signals(watched, child.pid, child.terminal, self.wake_write)
        self.outputs = {target: _Output(target, self.wake_write) for _, target in child.outputs}
        self.streams = {fd: _Stream(fd, self.outputs[target], masks.stream(), fd == child.terminal)
                        for fd, target in child.outputs}
        if len(self.streams) == 2:
            first, second = self.streams.values()
            first.partner, second.partner = second, first
        self.paused: set[int] = set()  # streams not read while their output is backed up
        self.keyboard = (_Keyboard(child.terminal)
                         if child.keyboard and child.terminal is not None else None)
        self.owning = False  # in the terminal's foreground: raw mode, keys relayed
        self.post_processing = child.post_processing
        self.check_at: float | None = None  # when to look again whether keyrun is in front
        self.status: int | None = None
        self.ended_at = 0.0
        self.cut_at: float | None = None  # told to end: stop draining then
        self.renew_at: float | None = None

    def run(self) -> int:
        """Relay until the command has ended and its outputs are drained; its status."""
        self.signals.start()
        for output in self.outputs.values():
            output.start()
        self.selector.register(self.wake_read, selectors.EVENT_READ)
        for fd in self.streams:
            self.selector.register(fd, selectors.EVENT_READ)
        self._check_foreground()
        self.renew_at = _deadline(self.keeper.first_renewal())
        self._reap()
        try:
            while self.streams or self.status is None:
                ready = [(int(key.fd), events)
                         for key, events in self.selector.select(self._timeout())]
                both = [fd for fd, events in ready
                        if fd in self.streams and events & selectors.EVENT_READ]
                if len(both) == 2:  # the command wrote to both: keep what crosses them
                    self._pump_pair(*both)
                for fd, events in ready:
                    if len(both) == 2 and fd in both:
                        events &= ~selectors.EVENT_READ  # read by _pump_pair
                    if events:
                        self._handle(fd, events)
                now = time.monotonic()
                if self.cut_at is not None and now >= self.cut_at:
                    break
                self._timers(now)
                if self.renew_at is not None and now >= self.renew_at:
                    self.renew_at = _deadline(self.keeper.renew())
            for fd in list(self.streams):
                self._close(fd)
            for output in self.outputs.values():
                output.finish()
        finally:
            self.signals.stop()
            self.selector.close()
            os.close(self.wake_read)
            os.close(self.wake_write)
        assert self.status is not None  # the loop ends only once the command has
        return self.status

    def _timeout(self) -> float | None:
        deadlines = [s.release_at for s in self.streams.values() if s.release_at is not None]
        for deadline in (self.renew_at, self.cut_at):
            if deadline is not None:
                deadlines.append(deadline)
        if self.status is not None:
            leftovers = [self._leftover_deadline(s) for s in self.streams.values()]
            deadlines += [d for d in leftovers if d is not None]
        if self.check_at is not None:
            deadlines.append(self.check_at)
        if not deadlines:
            return None
        return max(0.0, min(deadlines) - time.monotonic())

    def _handle(self, fd: int, events: int) -> None:
        if fd == self.wake_read:
            self._woken(os.read(fd, 512))
        elif fd == 0 and self.keyboard is not None:
            self._type()
        elif fd in self.streams:
            if events & selectors.EVENT_WRITE and self.keyboard is not None:
                self.keyboard.drain()
                self._watch_keyboard()
            if events & selectors.EVENT_READ:
                self._pump(fd)

    def _pump(self, fd: int) -> None:
        """Relay what one output has. Its partner is read in the same go when it has
        something too (``_deliver_pair``): read after this one, so that what the command
        wrote to it before writing more here is taken together."""
        stream = self.streams[fd]
        data = stream.take()
        partner = stream.partner
        if (data and partner is not None and partner.fd in self.streams
                and partner.fd not in self.paused and _readable(partner.fd)):
            self._deliver_pair((stream, partner), (data, partner.take()))
            return
        if data:
            stream.deliver(data)
        self._pumped(fd, data is None or (bool(data) and stream.over()))

    def _pump_pair(self, first: int, second: int) -> None:
        streams = self.streams[first], self.streams[second]
        self._deliver_pair(streams, (streams[0].take(), streams[1].take()))

    def _deliver_pair(self, streams: tuple[_Stream, _Stream],
                      taken: tuple[bytes | None, bytes | None]) -> None:
        """Both outputs had something: a value begun on one and finished on the other may
        now be followed, on the first, by what the command wrote after it (the order of
        its writes is lost): the first is fed up to where that value was cut, then the
        other, then the rest."""
        order: list[tuple[_Stream, bytes]] = [
            (stream, data) for stream, data in zip(streams, taken, strict=True) if data]
        for (one, data), (other, more) in itertools.permutations(order, 2):
            cut = one.masker.split_point(data, more)
            if cut is not None:
                order = [(one, data[:cut]), (other, more), (one, data[cut:])]
                break
        for stream, piece in order:
            if piece:
                stream.deliver(piece)
        for stream, read in zip(streams, taken, strict=True):
            if stream.fd in self.streams:
                self._pumped(stream.fd, read is None or (bool(read) and stream.over()))

    def _pumped(self, fd: int, alive: bool) -> None:
        stream = self.streams[fd]
        if not alive:
            self._close(fd)
        elif stream.output.full():
            self.paused.add(fd)  # the rest waits in the command's pipe (memory stays bounded)
            self._watch(fd)

    def _woken(self, why: bytes) -> None:
        if b"c" in why:
            self._reap()
        if b"s" in why:
            self._cut()
        if b"w" in why:
            self._outputs_changed()
        if b"k" in why:
            self._check_foreground()

    def _outputs_changed(self) -> None:
        """An output has room again, or its reader went away."""
        for fd, stream in list(self.streams.items()):
            if not stream.over():
                self._close(fd)
            elif fd in self.paused and not stream.output.full():
                self.paused.discard(fd)
                stream.active_at = time.monotonic()
                self._watch(fd)

    def _reap(self) -> None:
        if self.status is None:
            status = self.signals.reap()
            if status is not None and os.WIFSTOPPED(status):
                self._suspend()
                return
            self.status = status
            if self.status is not None:
                self.ended_at = time.monotonic()
                for stream in self.streams.values():
                    stream.settle()
                self._stop_keyboard()
                # keyrun's terminal stays raw while output may still come: restored now,
                # the pseudo-terminal's \r\n would become \r\r\n on the way out
                self.renew_at = None
                self.keeper.release()  # now, not once a background process lets go
                if self.signals.ending():
                    self._cut()

    def _cut(self) -> None:
        """keyrun was told to end and the command has ended: what its leftover processes
        write is drained for ``SIGNAL_GRACE`` more, not until they close it."""
        if self.cut_at is None:
            self.cut_at = time.monotonic() + SIGNAL_GRACE

    def _suspend(self) -> None:
        """The command stopped on its terminal (Ctrl-Z): give the terminal back and stop
        keyrun as a job; once continued (fg, bg), take it again and continue the command."""
        self._read_until_quiet(time.monotonic() + SUSPEND_DRAIN)
        for stream in self.streams.values():
            if stream.release_at is not None:
                stream.release()  # a stopped command is as quiet as it gets
        for output in self.outputs.values():
            output.drain(SUSPEND_DRAIN)  # what the command wrote before it stopped
        self._release_keyboard()
        os.kill(os.getpid(), signal.SIGTSTP)  # discarded if keyrun's group is orphaned
        self._check_foreground()
        if self.child.terminal is not None:
            copy_window_size(self.child.terminal)
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.child.pid, signal.SIGCONT)

    def _read_until_quiet(self, deadline: float) -> None:
        """Relay what the command's outputs still hold until they have been quiet for
        ``SUSPEND_QUIET`` (or until ``deadline``)."""
        poller = select.poll()
        for fd in self.streams:
            if fd not in self.paused:
                poller.register(fd, select.POLLIN)
        while (left := deadline - time.monotonic()) > 0:
            ready = poller.poll(1000 * min(SUSPEND_QUIET, left))
            if not ready:
                return
            for fd, _ in ready:
                if fd in self.streams and fd not in self.paused:
                    self._pump(fd)
                if fd not in self.streams or fd in self.paused:
                    poller.unregister(fd)

    def _leftover_deadline(self, stream: _Stream) -> float | None:
        """After the command ended: when keyrun stops reading this output. What was written
        before the end is relayed however long that takes (the reader may be slow); then a
        process the command left behind is not waited for: keyrun ends with the command."""
        if not stream.settled():
            return None
        quiet = TERMINAL_LEFTOVER_QUIET if stream.terminal else LEFTOVER_QUIET
        return min(max(self.ended_at, stream.active_at) + quiet, self.ended_at + LEFTOVER_LIMIT)

    def _type(self) -> None:
        assert self.keyboard is not None
        if self.keyboard.read():
            self._watch_keyboard()
        else:
            self._release_keyboard()

    def _check_foreground(self) -> None:
        """Relay keys while keyrun is the terminal's foreground job, and only then."""
        if self.keyboard is None:
            return
        if _owns_keyboard():
            self._take_keyboard()
        else:
            self._release_keyboard()

    def _take_keyboard(self) -> None:
        assert self.child.terminal is not None
        self.check_at = None
        if self.raw is not None:
            with contextlib.suppress(termios.error):
                self.raw.enter()
        if not self.post_processing:
            _post_process(self.child.terminal)
            self.post_processing = True
        copy_window_size(self.child.terminal)  # no SIGWINCH reaches a background job
        self.owning = True
        self._watch_keyboard()

    def _release_keyboard(self) -> None:
        """Give the terminal back (its mode is restored if keyrun is still in front) and
        stop reading keys; look again for the foreground every FOREGROUND_POLL."""
        if self.keyboard is None:
            return
        if self.raw is not None:
            self.raw.restore()
        self.owning = False
        self.check_at = time.monotonic() + FOREGROUND_POLL
        if 0 in self.selector.get_map():
            self.selector.unregister(0)

    def _watch_keyboard(self) -> None:
        """Read keys only while the last ones are delivered; wait for the terminal to
        take them otherwise (memory stays bounded)."""
        keyboard, terminal = self.keyboard, self.child.terminal
        if keyboard is None or terminal not in self.streams:
            return
        waiting = bool(keyboard.pending)
        self._watch(terminal)
        registered = 0 in self.selector.get_map()
        if registered and (waiting or not keyboard.open):
            self.selector.unregister(0)
        elif not registered and keyboard.open and not waiting and self.owning:
            self.selector.register(0, selectors.EVENT_READ)

    def _stop_keyboard(self) -> None:
        if self.keyboard is None:
            return
        if 0 in self.selector.get_map():
            self.selector.unregister(0)
        self.keyboard = None
        self.check_at = None
        if self.child.terminal in self.streams:
            self._watch(self.child.terminal)

    def _watch(self, fd: int) -> None:
        """Wait for a stream to be readable unless its output is backed up, and for the
        pseudo-terminal to be writable while keys wait for it."""
        events = 0 if fd in self.paused else selectors.EVENT_READ
        if fd == self.child.terminal and self.keyboard is not None and self.keyboard.pending:
            events |= selectors.EVENT_WRITE
        registered = fd in self.selector.get_map()
        if registered and events:
            self.selector.modify(fd, events)
        elif registered:
            self.selector.unregister(fd)
        elif events:
            self.selector.register(fd, events)

    def _timers(self, now: float) -> None:
        for stream in list(self.streams.values()):
            if stream.release_due(now):
                stream.release()
        if self.check_at is not None and now >= self.check_at:
            self._check_foreground()
        if self.status is not None:
            for fd, stream in list(self.streams.items()):
                deadline = self._leftover_deadline(stream)
                if deadline is not None and now >= deadline:
                    self._close(fd)

    def _close(self, fd: int) -> None:
        stream = self.streams.pop(fd)
        self.paused.discard(fd)
        if fd in self.selector.get_map():
            self.selector.unregister(fd)
        if fd == self.child.terminal:
            self._stop_keyboard()
        stream.finish()


def _deadline(delay: float | None) -> float | None:
    return None if delay is None else time.monotonic() + delay
