"""Shared helpers for the bench/pg_tools scripts: finding the binary, starting and stopping
a throwaway Freshet server, describing the machine, and the deterministic test rows.

Not a script of its own; imported by copy_vs_insert.py and cursor_memory.py.
"""

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime, timedelta

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))

TABLE_DDL = (
    "CREATE TABLE {name} (id BIGINT PRIMARY KEY, user_id BIGINT, title VARCHAR, "
    "secs DOUBLE PRECISION, at TIMESTAMP)"
)
BASE_TS = datetime(2024, 1, 1)


def ensure_psycopg():
    """Re-runs this script under the clients' virtualenv (scripts/clients.sh venv) when the
    current python lacks psycopg 3."""
    try:
        import psycopg  # noqa: F401

        return
    except ImportError:
        pass
    if os.environ.get("FRESHET_BENCH_REEXEC"):
        sys.exit("psycopg 3 is not installed: run scripts/clients.sh first")
    venv_py = subprocess.run(
        [os.path.join(REPO, "scripts", "clients.sh"), "venv"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    if not os.path.exists(venv_py):
        sys.exit(f"{venv_py} is missing: run scripts/clients.sh first")
    os.environ["FRESHET_BENCH_REEXEC"] = "1"
    os.execv(venv_py, [venv_py] + sys.argv)


def default_binary():
    target = os.environ.get("CARGO_TARGET_DIR") or os.path.join(REPO, "target")
    for profile in ("release", "debug"):
        p = os.path.join(target, profile, "freshet")
        if os.path.exists(p):
            return p
    return os.path.join(target, "release", "freshet")


def add_server_args(ap: argparse.ArgumentParser):
    ap.add_argument(
        "--binary",
        default=os.environ.get("FRESHET_BIN") or default_binary(),
        help="freshet binary (env FRESHET_BIN; default $CARGO_TARGET_DIR or target/, "
        "release/freshet, else debug/freshet)",
    )
    ap.add_argument(
        "--keep-data", action="store_true", help="keep the temporary data directory"
    )
    ap.add_argument(
        "--server-arg",
        action="append",
        default=[],
        help="extra argument for `freshet serve` (repeatable)",
    )


def build_profile(path):
    """'debug' or 'release', from the path, else from the build-script OUT_DIR paths
    (<target>/<profile>/build/…) compiled into the binary (`file` cannot tell: both
    profiles keep line tables)."""
    parts = os.path.realpath(path).split(os.sep)
    for p in ("release", "debug"):
        if p in parts:
            return p, "path"
    try:
        with open(path, "rb") as f:
            import mmap

            m = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
            dbg = m.find(b"/debug/build/") >= 0
            rel = m.find(b"/release/build/") >= 0
            m.close()
    except OSError:
        return "unknown", "unreadable"
    if dbg and not rel:
        return "debug", "embedded …/debug/build/ paths"
    if rel and not dbg:
        return "release", "embedded …/release/build/ paths"
    return "unknown", "embedded paths inconclusive"


def machine_line():
    model = "?"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = "?"
    try:
        for line in open("/proc/meminfo"):
            if line.startswith("MemTotal:"):
                mem = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
                break
    except OSError:
        pass
    try:
        load = open("/proc/loadavg").read().split()[:3]
    except OSError:
        load = ["?"]
    return (
        f"machine: {os.cpu_count()} cpus (nproc {len(os.sched_getaffinity(0))}), "
        f"{model}, RAM {mem}, load avg {' '.join(load)}"
    )


def binary_line(path):
    profile, how = build_profile(path)
    file_out = ""
    if shutil.which("file"):
        file_out = subprocess.run(
            ["file", "-b", path], capture_output=True, text=True
        ).stdout.strip()
        file_out = "; file: " + file_out.split(",")[0] + (
            ", with debug_info" if "with debug_info" in file_out else ""
        )
    return f"binary: {os.path.realpath(path)} ({profile} build, by {how}{file_out})"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_kb(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def cpu_secs(pid):
    """User + system CPU seconds a process has used (from /proc/PID/stat)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    # fields[0] is the state (field 3); utime and stime are fields 14 and 15
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Server:
    """A `freshet serve` on a free loopback port and a fresh temporary data directory."""

    def __init__(self, binary, extra_args=(), keep_data=False):
        if not os.path.exists(binary):
            sys.exit(f"no freshet binary at {binary} (give --binary or FRESHET_BIN)")
        self.binary = binary
        self.keep_data = keep_data
        self.tmp = tempfile.mkdtemp(prefix="freshet-bench-")
        self.data_dir = os.path.join(self.tmp, "data")
        self.log_path = os.path.join(self.tmp, "server.log")
        self.port = free_port()
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [
                binary,
                "serve",
                "--listen",
                f"127.0.0.1:{self.port}",
                "--data-dir",
                self.data_dir,
                *extra_args,
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        self.pid = self.proc.pid
        self.conninfo = (
            f"host=127.0.0.1 port={self.port} user=freshet dbname=freshet "
            "application_name=pg_tools_bench"
        )
        self._wait_ready()

    def _wait_ready(self, timeout=120):
        import psycopg

        deadline = time.time() + timeout
        last = None
        while time.time() < deadline:
            if self.proc.poll() is not None:
                self._fail(f"server exited with {self.proc.returncode}")
            try:
                psycopg.connect(self.conninfo, connect_timeout=2).close()
                return
            except psycopg.OperationalError as e:
                last = e
                time.sleep(0.2)
        self._fail(f"server not ready after {timeout}s: {last}")

    def _fail(self, msg):
        self.stop()
        try:
            tail = open(self.log_path, errors="replace").read()[-3000:]
        except OSError:
            tail = ""
        sys.exit(f"{msg}\n--- server log ({self.log_path}) ---\n{tail}")

    def connect(self, **kw):
        import psycopg

        return psycopg.connect(self.conninfo, **kw)

    def rss_kb(self):
        return rss_kb(self.pid)

    def cpu_secs(self):
        return cpu_secs(self.pid)

    def stop(self):
        """SIGTERM, then SIGKILL after 30 s; removes the data directory unless kept."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                print("server ignored SIGTERM for 30 s; killing it", file=sys.stderr)
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        if self.keep_data:
            print(f"data and server log kept in {self.tmp}", file=sys.stderr)
        else:
            shutil.rmtree(self.tmp, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


class RssSampler:
    """Samples a process's VmRSS (KiB) every `interval` seconds on a thread."""

    def __init__(self, pid, interval=1.0):
        self.pid = pid
        self.interval = interval
        self.samples = []
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while True:
            v = rss_kb(self.pid)
            if v is not None:
                self.samples.append(v)
            if self._stop.wait(self.interval):
                break

    def __enter__(self):
        self._t.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._t.join()
        v = rss_kb(self.pid)  # one more at the end
        if v is not None:
            self.samples.append(v)


# The rows: id 1..n, user_id = id % 1000, title 'title <id>', secs = (id % 1000) / 2
# (exact in binary, so sums are exact), at = 2024-01-01 + id seconds.


def row_secs(i):
    return (i % 1000) / 2


def expected_sums(n):
    """(count, sum(id), sum(secs)) of rows 1..n."""
    full, rest = divmod(n, 1000)
    # each full block of 1000 consecutive ids covers every residue 0..999 once
    secs = full * sum(r / 2 for r in range(1000))
    start = full * 1000 + 1
    secs += sum(row_secs(i) for i in range(start, n + 1))
    return n, n * (n + 1) // 2, secs


def copy_text(lo, hi):
    """COPY text-format lines of rows lo..hi-1."""
    return "".join(
        f"{i}\t{i % 1000}\ttitle {i}\t{row_secs(i)}\t"
        f"{(BASE_TS + timedelta(seconds=i)).isoformat(' ')}\n"
        for i in range(lo, hi)
    )


def values_sql(lo, hi):
    """`(…),(…)` VALUES list of rows lo..hi-1."""
    return ",".join(
        f"({i},{i % 1000},'title {i}',{row_secs(i)},"
        f"'{(BASE_TS + timedelta(seconds=i)).isoformat(' ')}')"
        for i in range(lo, hi)
    )


def check_table(conn, table, n):
    """Checks count(*), sum(id) and sum(secs) of `table` against rows 1..n; returns
    (ok, description)."""
    got = conn.execute(f"SELECT count(*), sum(id), sum(secs) FROM {table}").fetchone()
    want = expected_sums(n)
    ok = (
        int(got[0]) == want[0]
        and int(got[1]) == want[1]
        and abs(float(got[2]) - want[2]) <= 1e-9 * max(1.0, want[2])
    )
    desc = f"count={got[0]} sum(id)={got[1]} sum(secs)={got[2]}"
    if not ok:
        desc += f" (expected count={want[0]} sum(id)={want[1]} sum(secs)={want[2]})"
    return ok, desc


def fmt_kb(kb):
    return "?" if kb is None else f"{kb / 1024:.0f} MiB"
