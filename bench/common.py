"""Helpers shared by the benchmark scripts: commands, ports, source files, hashing, child processes.

Every script in bench/ runs as ``python bench/NAME.py``, so this directory is on
``sys.path`` and they import this module as ``common``.
"""

from __future__ import annotations

import hashlib
import os
import random
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

BLOCK = 1 << 20
BENCH_DIR = Path(__file__).resolve().parent
RESULTS_DIR = BENCH_DIR / "results"


def script(name: str) -> str | None:
    """A console script installed next to this Python (no pyenv shim), else on PATH, else None."""
    local = Path(sys.executable).parent / name
    return str(local) if local.exists() else shutil.which(name)


def xfer_cmd() -> list[str]:
    """The installed ``xfer`` console script (next to this Python first), else ``python -m xfer``."""
    exe = script("xfer")
    return [exe] if exe else [sys.executable, "-m", "xfer"]


def wormhole_tools() -> dict[str, str] | None:
    """Paths of ``wormhole`` and ``twist`` (mailbox server and transit relay), or None if not installed."""
    if os.environ.get("XFER_BENCH_NO_WORMHOLE"):  # to check the suite without it
        return None
    tools = {name: script(name) for name in ("wormhole", "twist")}
    if not all(tools.values()):
        return None
    try:  # twist must know both plugins: magic-wormhole-mailbox-server and magic-wormhole-transit-relay
        import wormhole_mailbox_server  # noqa: F401
        import wormhole_transit_relay  # noqa: F401
    except ImportError:
        return None
    return tools


def _ports_outside_the_ephemeral_range() -> list[int]:
    """Ports the kernel never hands out by itself: a port from ``bind(0)`` is in the ephemeral
    range, where any outgoing connection on the machine may take it before the test's server
    binds it (a race seen on busy machines). Shuffled, so that runs at once rarely collide."""
    try:
        low, high = map(int, Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    except (OSError, ValueError):
        low, high = 32768, 60999
    ports = list(range(max(1024, low - 12000), low)) if low - 1024 >= 4000 else list(range(high + 1, 65536))
    random.Random(os.getpid() ^ time.monotonic_ns()).shuffle(ports)
    return ports


_PORTS = iter(_ports_outside_the_ephemeral_range())


def free_port() -> int:
    """A port free on every interface now, from outside the ephemeral range (see above)."""
    for port in _PORTS:
        try:
            with socket.socket() as s:
                s.bind(("", port))
        except OSError:
            continue
        return port
    raise RuntimeError("no free port left outside the ephemeral range")


def wait_for_port(port: int, timeout: float = 15, host: str = "127.0.0.1") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on {host}:{port}")


def make_source(path: Path, size: int, fsync: bool = True) -> str:
    """A file of ``size`` random bytes written in 1 MiB blocks; returns its SHA-256."""
    digest = hashlib.sha256()
    with open(path, "wb") as f:
        left = size
        while left > 0:
            block = os.urandom(min(left, BLOCK))
            f.write(block)
            digest.update(block)
            left -= len(block)
        if fsync:
            os.fsync(f.fileno())  # so the first run does not compete with this file's writeback
    return digest.hexdigest()


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(BLOCK):
            digest.update(block)
    return digest.hexdigest()


def spread(values: list[float]) -> dict:
    """Median, min and max (empty dict for no values)."""
    return {"median": statistics.median(values), "min": min(values), "max": max(values)} if values else {}


def fmt(s: dict, digits: int = 1) -> str:
    return f"{s['median']:.{digits}f} ({s['min']:.{digits}f}-{s['max']:.{digits}f})" if s else "-"


def raise_nofile() -> None:
    """Lift the soft open-files limit to the hard one (children inherit it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def rss_kib(pid: int) -> int:
    """Current resident set size of a running process, from /proc (KiB)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


def child_env() -> dict:
    env = {**os.environ, "NO_COLOR": "1"}
    env.pop("XFER_RELAY", None)
    return env


def peak_kib(pid: int) -> int | None:
    """The high-water mark of a running process's resident memory (VmHWM, KiB), or None once
    it has exited."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


PEAK_EVERY = 0.02  # seconds between two readings of a child's VmHWM


class Child:
    """A subprocess reaped by ``os.wait4(pid, 0)`` in a thread (exact exit time and CPU
    seconds), its peak RSS read from ``/proc/PID/status`` (VmHWM) in another while it runs.

    Not ``wait4``'s ``ru_maxrss``: Linux carries the larger of the forking process's RSS and
    the child's own peak across ``exec``, so a child of a big benchmark script reported the
    script's memory (511 MiB for a process that used 8.5 MiB). VmHWM is the child's own
    high-water mark; read every ``PEAK_EVERY`` s, it misses only a peak reached in the last
    reading's interval before exit (checked in tests/test_bench_smoke.py on children of known
    memory)."""

    def __init__(self, name: str, args: list[str], work: Path):
        self.name, self.rc, self.end, self.cpu_s = name, None, None, None
        self.user_s: float | None = None  # of cpu_s, the part in user space (the rest is the kernel's)
        self.rss_kib = 0
        self.out_path, self.err_path = work / f"{name}.out", work / f"{name}.err"
        with open(self.out_path, "wb") as out, open(self.err_path, "wb") as err:
            self.start = time.monotonic()
            self.proc = subprocess.Popen(
                args, cwd=work, env=child_env(), stdin=subprocess.DEVNULL, stdout=out, stderr=err
            )
        self._reaper = threading.Thread(target=self._reap, daemon=True)
        self._reaper.start()
        self._sampler = threading.Thread(target=self._sample, daemon=True)
        self._sampler.start()

    def _reap(self) -> None:
        _, status, usage = os.wait4(self.proc.pid, 0)
        self.end = time.monotonic()
        self.cpu_s = usage.ru_utime + usage.ru_stime  # CPU seconds, user and kernel, all threads
        self.user_s = usage.ru_utime
        self.rc = self.proc.returncode = os.waitstatus_to_exitcode(status)

    def _sample(self) -> None:
        # Until the reaper has reaped it (after that the pid may name another process).
        while self.rc is None:
            peak = peak_kib(self.proc.pid)
            if peak is not None and self.rc is None:
                self.rss_kib = max(self.rss_kib, peak)
            time.sleep(PEAK_EVERY)

    @property
    def rss_mb(self) -> float:
        return self.rss_kib * 1024 / 1e6

    def signal(self, sig: int) -> None:
        if self.rc is None:  # not Popen.send_signal: its poll() could reap the child before wait4 does
            try:
                os.kill(self.proc.pid, sig)
            except ProcessLookupError:
                pass

    def wait(self, deadline: float) -> None:
        self._reaper.join(max(0.0, deadline - time.monotonic()))
        self._sampler.join(1)
        if self.rc is None:
            raise RuntimeError(f"{self.name} did not finish in time{self.tail()}")

    def stop(self, seconds: float = 15) -> None:
        """SIGINT, then SIGKILL if it is still there after ``seconds``."""
        self.signal(signal.SIGINT)
        self._reaper.join(seconds)
        self.kill()

    def kill(self) -> None:
        self.signal(signal.SIGKILL)
        self._reaper.join(5)

    def tail(self) -> str:
        """The end of stderr and the last stdout line (with --json, the error event)."""
        err = self.err_path.read_text(errors="replace").strip()
        out = self.out_path.read_text(errors="replace").strip().splitlines()
        return "".join(
            f"; {what}: {text[-500:]}" for what, text in (("stderr", err), ("stdout", out[-1] if out else "")) if text
        )


def cpu_seconds(pid: int) -> float:
    """CPU seconds (user and kernel, all threads) a running process has used so far: for servers
    that outlive one run, measured before and after it."""
    return sum(cpu_split(pid))


def cpu_split(pid: int | str) -> tuple[float, float]:
    """``cpu_seconds`` as (user, kernel); ``"thread-self"`` for the calling thread's own."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


def cpu_per_gb(runs: dict[str, list[dict]], size: int, key: str = "cpu_s") -> dict[str, dict[str, float]]:
    """CPU seconds each process spent per GB (10^9 bytes) moved, median over the runs, and their total:
    on 2 cores no arrangement of those processes moves more than 2 / total GB a second. ``key``
    ``user_s``: the user-space part only."""
    out = {}
    for kind, rs in runs.items():
        rs = [r for r in rs if r.get(key) and None not in r[key].values()]
        if not rs:
            continue
        roles = {role: statistics.median(r[key][role] for r in rs) * 1e9 / size for role in rs[0][key]}
        if sum(roles.values()) > 0:  # a run shorter than a clock tick (--quick) measures no CPU at all
            out[kind] = {**roles, "total": sum(roles.values())}
    return out


def wait_until(check, what: str, child: Child, seconds: float):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if (value := check()) is not None:
            return value
        if child.rc is not None:
            raise RuntimeError(f"{child.name} exited {child.rc} before {what}{child.tail()}")
        time.sleep(0.02)
    raise RuntimeError(f"{child.name}: no {what} within {seconds:.0f} s{child.tail()}")


def relay_ready(relay: Child):
    # Printed once the app is built (the port is bound earlier, so a connect test could pass first).
    return True if "listening on" in relay.err_path.read_text(errors="replace") else None


def start_relay(cmd: list[str], work: Path, name: str = "relay", extra: tuple[str, ...] = ()) -> tuple[Child, int]:
    """``xfer serve`` on 127.0.0.1 and a free port, once it says it listens."""
    port = free_port()
    relay = Child(name, cmd + ["serve", "--host", "127.0.0.1", "--port", str(port), *extra], work)
    try:
        wait_until(lambda: relay_ready(relay), "'listening on' line", relay, 30)
    except BaseException:
        relay.kill()
        raise
    return relay, port


def byte_compile_xfer() -> dict:
    """Compile xfer's modules to ``__pycache__`` (git ignores it), as ``pip install`` does for a user.

    An editable install under ``PYTHONDONTWRITEBYTECODE=1`` (this machine's environment) would
    otherwise compile every xfer module from source at every start: about 50 ms of each process,
    which magic-wormhole, installed with its bytecode, never pays. Python checks each file's
    size and mtime, so a module edited later is recompiled, never run stale.
    """
    import compileall
    import importlib.util

    spec = importlib.util.find_spec("xfer")
    folders = list(spec.submodule_search_locations or []) if spec else []
    ok = all(compileall.compile_dir(folder, quiet=1) for folder in folders)
    return {
        "folders": folders,
        "ok": bool(folders) and ok,
        "pythondontwritebytecode": os.environ.get("PYTHONDONTWRITEBYTECODE"),
    }


def provenance() -> dict:
    """Which xfer ran: the module's file, and the git commit (and dirty state) of its source tree."""

    def out(args, cwd=None) -> str:
        try:
            return subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=30, check=False).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    module = out([sys.executable, "-c", "import xfer; print(xfer.__file__, xfer.__version__)"]).split()
    src = Path(module[0]).parent if module else Path(".")
    return {
        "module": module[0] if module else None,
        "version": module[1] if len(module) > 1 else None,
        "git_commit": out(["git", "rev-parse", "HEAD"], src) or None,
        "git_dirty": bool(out(["git", "status", "--porcelain", "."], src)),
        "pythonpath": os.environ.get("PYTHONPATH"),
    }


# -- what the suite reports -------------------------------------------------------------------------


# This VM's kernel hands a freed page back to its host once it has been free this long
# (free page reporting; 0 here). Touching a handed-back page again costs the host's fault and
# zeroing, which shows as kernel time of whoever touched it: a receiver writing a new file
# paid 4x the copy into the page cache (bench/README.md, the page-cache tax).
PAGE_REPORTING_MIN_FREE = Path("/sys/module/page_reporting/parameters/min_free_ms")
HOLD_FREED_MS = 60_000  # the largest value this kernel takes; longer than any case


class FreedPagesHeld:
    """While open, freed pages stay with this VM for ``HOLD_FREED_MS`` before they go back to
    the host, so a case reuses the pages the one before it freed instead of paying the host for
    fresh ones; the setting found is put back at exit. Needs root and a kernel with the
    parameter; otherwise nothing changes and ``note`` says so (``state`` is recorded either way)."""

    def __init__(self, wanted: bool = True):
        self.wanted, self.before, self.note = wanted, None, ""
        try:
            self.before = int(PAGE_REPORTING_MIN_FREE.read_text())
        except (OSError, ValueError):
            self.note = "no free page reporting to hold (not this kind of VM)"

    @property
    def state(self) -> dict:
        return {"min_free_ms_found": self.before, "held_ms": HOLD_FREED_MS if self.held else None}

    held = False

    def __enter__(self) -> FreedPagesHeld:
        if self.before is None or not self.wanted or self.before >= HOLD_FREED_MS:
            if self.before is not None and not self.wanted:
                self.note = f"freed pages go back to the host after {self.before} ms: receivers pay the page-cache tax"
            return self
        try:
            PAGE_REPORTING_MIN_FREE.write_text(str(HOLD_FREED_MS))
        except OSError as exc:
            self.note = f"could not hold freed pages ({exc.strerror}): receivers pay the page-cache tax"
            return self
        self.held = True
        self.note = (
            f"freed pages held for {HOLD_FREED_MS // 1000} s during the run (was {self.before} ms), put back at exit"
        )
        return self

    def __exit__(self, *exc: object) -> None:
        if self.held:
            PAGE_REPORTING_MIN_FREE.write_text(str(self.before))


def log(text: str) -> None:
    print(text, flush=True)


def target(name: str, measured: float | None, limit: float, better: str, unit: str = "") -> dict:
    """One target (issue 6 or 7): ``measured`` against ``limit``; ``better`` is ">=" or "<=" (or "<", "==")."""
    if measured is None:
        met = None
    else:
        met = {">=": measured >= limit, "<=": measured <= limit, "<": measured < limit, "==": measured == limit}[better]
    return {"target": name, "measured": measured, "limit": f"{better} {limit}{unit}", "met": met}


def report_targets(report: dict, out: Path, failures: list[str], label) -> int:
    """Print every benchmark's targets (``label(name)`` before each) and the failures; the exit status."""
    for name, result in report["benchmarks"].items():
        for t in result.get("targets", []):
            measured = "-" if t["measured"] is None else f"{t['measured']:.3g}"
            verdict = {True: "met", False: "NOT MET", None: "not measured"}[t["met"]]
            log(f"  {label(name)} {t['target']}: {measured} (target {t['limit']}): {verdict}")
    log(f"\nresults: {out}")
    if failures:
        print(f"{len(failures)} failure(s):\n  " + "\n  ".join(failures), file=sys.stderr)
    return 1 if failures else 0


def ratio(a: dict, b: dict) -> float | None:
    return a["median"] / b["median"] if a and b and b["median"] else None


AGREE = 0.15  # three rounds agree when the slowest is at most 15 % slower than the fastest


def spread_of_last(rs: list[dict], n: int = 3) -> float | None:
    """How far apart the last ``n`` runs' times are: slowest / fastest - 1 (None with fewer runs)."""
    times = [r["seconds"] for r in rs[-n:]]
    return max(times) / min(times) - 1 if len(times) == n and min(times) > 0 else None


def agreement(runs: dict[str, list[dict]], within: float = AGREE) -> dict[str, dict]:
    """For each case: the spread of its last three runs, whether it is within ``within``, and the
    load average (1 min) beside each of its runs."""
    out = {}
    for kind, rs in runs.items():
        last = spread_of_last(rs)
        out[kind] = {
            "last_three_spread": None if last is None else round(last, 3),
            "agree": last is not None and last <= within,
            "load": [r.get("load") for r in rs],
        }
    return out


def run_cases(
    cases: list[tuple],
    repeat: int,
    failures: list[str],
    label: str,
    *,
    max_repeat: int | None = None,
    within: float = AGREE,
) -> dict[str, list[dict]]:
    """Run each (kind, fn) ``repeat`` times, interleaved; failures are noted and skipped.

    With ``max_repeat``, rounds go on until the last three runs of every case agree within
    ``within`` (see ``agreement``), or ``max_repeat`` rounds have run. Each run records the
    load average at its end (``load``) so that a figure is never read without it.

    Each round starts one case further on (round 2 with the second case, ...), so no case
    always runs in the same place: on this VM the case after another's deleted gigabyte paid
    the page-cache tax more often (see bench/README.md)."""
    runs: dict[str, list[dict]] = {kind: [] for kind, _ in cases}
    i = 0
    while True:
        i += 1
        turn = (i - 1) % len(cases)
        for kind, fn in cases[turn:] + cases[:turn]:
            try:
                r = fn()
            except Exception as exc:  # noqa: BLE001 -- recorded; the exit status becomes 1
                failures.append(f"{label} {kind} run {i}: {exc}")
                log(f"  {kind} run {i}: FAILED: {exc}")
                continue
            r["load"] = round(os.getloadavg()[0], 2)
            runs[kind].append(r)
            extra = (f" via {r['path']}" if "path" in r else "") + (f"; {r['note']}" if "note" in r else "")
            total = f" ({r['total_seconds']:.2f} s from the first's)" if "total_seconds" in r else ""
            log(
                f"  {kind} run {i}: {r['seconds']:.2f} s from the second process's start{total}, "
                f"{r['mb_s']:.1f} MB/s{extra}; load {r['load']:.1f}"
            )
        if i < repeat:
            continue
        if max_repeat is None or i >= max_repeat:
            break
        apart = {kind: spread_of_last(rs) for kind, rs in runs.items()}
        if all(a is not None and a <= within for a in apart.values()):
            break
        far = ", ".join(
            f"{k} {a:.0%}" if a is not None else f"{k} -" for k, a in apart.items() if a is None or a > within
        )
        log(f"  the last three runs do not agree within {within:.0%} ({far}): round {i + 1} of at most {max_repeat}")
    return runs
