"""Child processes of a benchmark run: output read line by line, stopped for sure."""

from __future__ import annotations

import os
import re
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STOP_TIMEOUT_S = 10.0
POLL_S = 0.05

# Flags both `lt` clients also read from the environment (yargs `.env(true)` in the npm
# client, the same names in ours): a stray PORT or HOST would change what they do.
CLIENT_ENV_FLAGS = (
    "PORT HOST SUBDOMAIN LOCAL_HOST LOCAL_HTTPS LOCAL_CERT LOCAL_KEY LOCAL_CA "
    "ALLOW_INVALID_CERT PRINT_REQUESTS OPEN TAKEOVER LOCAL_KEEPALIVE LT_TOKEN"
    # ours only: the relay's certificate (--ca, --insecure) and a forward proxy (connect.py)
    " CA INSECURE HTTPS_PROXY https_proxy HTTP_PROXY http_proxy NO_PROXY no_proxy"
).split()


class StartError(Exception):
    """A child did not start as expected; the message says why, with its last output."""


class Child:
    """A child process whose merged stdout/stderr is collected line by line."""

    def __init__(
        self,
        args: list[str],
        env: dict[str, str] | None = None,
        name: str = "",
        stdin: int | None = subprocess.DEVNULL,
        cwd: Path = ROOT,
    ) -> None:
        self.name = name or Path(args[0]).name
        self.lines: list[str] = []
        self._cond = threading.Condition()
        self.proc = subprocess.Popen(
            args,
            cwd=cwd,
            env=env,
            stdin=stdin,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            with self._cond:
                self.lines.append(raw.decode("utf-8", "replace").rstrip("\n"))
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def tail(self, count: int = 15) -> str:
        with self._cond:
            return "\n".join(self.lines[-count:])

    def wait_for_line(self, pattern: str, timeout: float) -> re.Match[str]:
        """The first output line matching `pattern`; StartError after `timeout` or an exit."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        seen = 0
        with self._cond:
            while True:
                for line in self.lines[seen:]:
                    match = regex.search(line)
                    if match:
                        return match
                seen = len(self.lines)
                left = deadline - time.monotonic()
                exited = self.proc.poll() is not None and not self._reader.is_alive()
                if left <= 0 or exited:
                    raise StartError(
                        f"{self.name} did not print /{pattern}/ within {timeout:g} s "
                        f"(exit code {self.proc.poll()}); last output:\n{self.tail()}"
                    )
                self._cond.wait(min(left, 0.2))

    def send_line(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write((line + "\n").encode())
        self.proc.stdin.flush()

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> int | None:
        """SIGTERM, then SIGKILL if it has not exited within `timeout`; the exit code."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout)
        self._reader.join(timeout)
        for pipe in (self.proc.stdin, self.proc.stdout):
            if pipe is not None:
                pipe.close()
        return self.proc.returncode


class Children:
    """Every child of a run; `stop_all` (in a `finally`) stops them newest first."""

    child_class: type[Child] = Child

    def __init__(self) -> None:
        self.children: list[Child] = []

    def start(self, args: list[str], env: dict[str, str] | None = None, **kw: object) -> Child:
        child = self.child_class(args, env, **kw)  # type: ignore[arg-type]
        self.children.append(child)
        return child

    def mark(self) -> int:
        """Where the children started from now on begin, for `stop_since`."""
        return len(self.children)

    def stop_since(self, mark: int) -> None:
        """Stop the children started after `mark`, newest first, and forget them."""
        for child in reversed(self.children[mark:]):
            try:
                child.stop()
            except Exception:  # keep stopping the others
                pass
        del self.children[mark:]

    def stop_all(self) -> None:
        for child in reversed(self.children):
            try:
                child.stop()
            except Exception:  # keep stopping the others
                pass
        self.children.clear()


def client_env(**extra: str) -> dict[str, str]:
    """The environment of a client or helper process: without the flags that would change
    what it measures, and with this tree first on its path. The client package is
    `client/tunnelsite_client` here; the venv's editable install may point at another
    checkout (a tree measured beside this one with the same venv ran that one's client),
    and a stale one can make `client` a namespace package."""
    env = {k: v for k, v in os.environ.items() if k not in CLIENT_ENV_FLAGS}
    env["PYTHONPATH"] = os.pathsep.join((str(ROOT / "client"), str(ROOT)))
    env.update(extra)
    return env


def wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(POLL_S)


def rss_kb(pid: int) -> int:
    """VmRSS of a process, in KiB, from /proc/PID/status."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time a process has used so far, from /proc/PID/stat."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    # After the command's closing parenthesis: state is field 3, utime 14 and stime 15.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_snapshot(pids: dict[str, int]) -> dict[str, float]:
    """`cpu_seconds` of each process by role; a process that has exited is left out."""
    seen: dict[str, float] = {}
    for role, pid in pids.items():
        try:
            seen[role] = cpu_seconds(pid)
        except OSError:  # gone: no figure rather than a wrong one
            pass
    return seen


@dataclass
class Weight:
    """What `set_weight` changed, for `restore_weight`: the autogroup's nice (None: the
    kernel does not group by session) and each thread's."""

    pid: int
    autogroup: int | None
    threads: dict[int, int]


def set_weight(pid: int, nice: int) -> Weight:
    """Weigh process `pid` (started in a session of its own, as `Child` starts every child)
    against the machine's other work at `nice`: what it had, for `restore_weight`.

    Both levers at once. With the kernel's autogroups (Debian's default) the scheduler shares
    the cores between sessions first, and a session's weight is /proc/PID/autogroup's nice;
    where autogroups do not apply (a process in a CPU cgroup other than the root: a container,
    systemd's CPU controller), each thread's nice is what counts. A negative nice needs
    CAP_SYS_NICE (root) or an RLIMIT_NICE that allows it: OSError otherwise, with nothing
    changed."""
    weight = Weight(pid, None, {})
    try:
        autogroups = Path("/proc/sys/kernel/sched_autogroup_enabled")
        if autogroups.exists() and autogroups.read_text().strip() == "1":
            group = Path(f"/proc/{pid}/autogroup")
            before = int(group.read_text().split()[-1])  # "/autogroup-123 nice 0"
            group.write_text(str(nice))
            weight.autogroup = before
        for tid in (int(t) for t in os.listdir(f"/proc/{pid}/task")):
            try:
                before = os.getpriority(os.PRIO_PROCESS, tid)
                os.setpriority(os.PRIO_PROCESS, tid, nice)
            except ProcessLookupError:
                continue  # the thread ended meanwhile: nothing to weigh or undo
            weight.threads[tid] = before
    except OSError:
        restore_weight(weight)
        raise
    return weight


def restore_weight(weight: Weight) -> None:
    """Undo `set_weight` (a raised nice needs no privilege); threads gone are skipped."""
    if weight.autogroup is not None:
        Path(f"/proc/{weight.pid}/autogroup").write_text(str(weight.autogroup))
    for tid, nice in weight.threads.items():
        try:
            os.setpriority(os.PRIO_PROCESS, tid, nice)
        except ProcessLookupError:
            pass


def run_queue_ns(pid: int) -> int:
    """Nanoseconds process `pid`'s main thread has waited runnable for a core (the second
    field of /proc/PID/schedstat)."""
    return int(Path(f"/proc/{pid}/schedstat").read_text().split()[1])


def machine_times() -> tuple[int, int]:
    """(busy, all) clock ticks of every core since boot, from /proc/stat's first line."""
    # user nice system idle iowait irq softirq steal; guest and guest_nice, left out, are
    # within user and nice already. Steal (a vCPU that wanted to run and the host ran another)
    # counts as busy: the cores were wanted.
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    idle = fields[3] + fields[4]  # idle and iowait
    return sum(fields) - idle, sum(fields)


def busy_share(before: tuple[int, int], after: tuple[int, int]) -> float | None:
    """The share of the machine's cores busy between two `machine_times`; None if no tick
    passed."""
    busy, total = after[0] - before[0], after[1] - before[1]
    return round(busy / total, 3) if total > 0 else None


def cpu_us_per_request(
    before: dict[str, float], after: dict[str, float], requests: int
) -> dict[str, float]:
    """Microseconds of CPU per request of each role between two snapshots, and their sum
    as "total"; {} when no request was made."""
    if requests <= 0:
        return {}
    used = {
        role: (after[role] - start) / requests * 1e6
        for role, start in before.items()
        if role in after
    }
    if used:
        used["total"] = sum(used.values())
    return used


def fd_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))
