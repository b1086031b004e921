#!/usr/bin/env python3
"""Soak test: pingap in front of an nginx backend on loopback for a while, under everything at
once, watching for leaks. Not run in CI.

    python3 benches/soak.py               # 10 minutes
    python3 benches/soak.py --minutes 1   # a quick check

Needs Debian's nginx and wrk (apt-get install nginx wrk), and builds pingap in release mode
unless target/release/pingap is newer than the sources. pingap runs with one worker thread
pinned to CPU 0, wrk and the backend share CPU 1, as in load.py. For the whole run:

- 10,000 idle keep-alive connections, each after one request and its response (the script
  raises RLIMIT_NOFILE before starting pingap, which inherits it);
- 200 slow clients sending a never-ending request header one byte a second (slowloris),
  reconnecting whenever pingap closes them;
- wrk with 20 connections in back-to-back 30-second runs;
- a reload every second: the config is rewritten with a new `X-Soak: N` header rule and pingap
  gets SIGHUP; its log must say the reload succeeded, and every 10 s a request must see the
  newest response header;
- every 10 s: pingap's RSS, open fds, threads and TCP connections (from /proc).

`[basic] client_header_timeout` and `send_timeout` (10s) are set when `pingap -t` accepts them;
`keepalive_timeout` is 3600s so the idle connections are not closed during the run. Prints a
table over time and a summary; exits 1 if a steady-load request or a reload failed.
"""

import argparse
import asyncio
from datetime import datetime
import http.client
import itertools
import json
import os
import re
import resource
import select
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
# load.py only defines things at import; its benchmark runs under `if __name__ == "__main__"`.
from load import LOAD_CPU, PROXY_CPU, ROOT, cpu_seconds, free_port, memory_mib, tree, wait_port, write  # noqa: E402

SAMPLE_EVERY = 10.0
RELOAD_EVERY = 1.0
RELOAD_ANSWER_WITHIN = 5.0
WRK_RUN = 30
WRK_CONNECTIONS = 20
TIMEOUTS = 'client_header_timeout = "10s"\nsend_timeout = "10s"\n'
REQUEST = b"GET /small HTTP/1.1\r\nHost: soak\r\n\r\n"
BINARY = os.path.join(ROOT, "target", "release", "pingap")
SOURCES = ("src", "plugins", "vendor", "configs", "Cargo.toml", "Cargo.lock", "build.rs")


# ---- pingap: binary and configuration ------------------------------------------------------


def newest_source():
    newest = 0.0
    for name in SOURCES:
        path = os.path.join(ROOT, name)
        if os.path.isfile(path):
            newest = max(newest, os.stat(path).st_mtime)
        for directory, subdirs, files in os.walk(path):
            subdirs[:] = [d for d in subdirs if d not in ("target", ".git")]
            for file in files:
                try:
                    newest = max(newest, os.stat(os.path.join(directory, file)).st_mtime)
                except OSError:
                    pass
    return newest


def pingap_binary(no_build):
    if os.path.exists(BINARY) and (no_build or os.stat(BINARY).st_mtime > newest_source()):
        print(f"using {BINARY} (newer than the sources)" if not no_build else f"using {BINARY}")
        return
    print("building pingap (release)...", flush=True)
    subprocess.run(["cargo", "build", "--release", "-q", "--bin", "pingap"], cwd=ROOT, check=True)


def pingap_config(work, port, backend_port, counter, timeouts):
    return f"""[basic]
threads = 1
log_level = "info"
log_format = "json"
keepalive_timeout = "3600s"
upgrade_sock = "{work}/upgrade.sock"
{TIMEOUTS if timeouts else ""}
[upstreams.backend]
addrs = ["127.0.0.1:{backend_port}"]

[locations.plain]
upstream = "backend"
headers_set = ["X-Soak: {counter}"]
response_headers_set = ["X-Soak: {counter}"]

[servers.main]
addr = "127.0.0.1:{port}"
locations = ["plain"]
"""


def write_atomically(path, text):
    """A reload never reads a half-written file."""
    write(path + ".tmp", text)
    os.replace(path + ".tmp", path)


def timeouts_supported(work, port, backend_port):
    """Whether `pingap -t` accepts basic.client_header_timeout and send_timeout."""
    path = f"{work}/check.toml"
    for timeouts in (True, False):
        write(path, pingap_config(work, port, backend_port, 0, timeouts))
        check = subprocess.run([BINARY, "-t", "-c", path], capture_output=True, text=True)
        if check.returncode == 0:
            return timeouts
        if timeouts:
            reason = (check.stderr or check.stdout).strip().splitlines()
            print(f"pingap -t rejects the timeouts ({reason[0] if reason else 'no output'})")
    sys.exit(f"pingap -t rejects the soak configuration:\n{check.stderr}{check.stdout}")


class Log:
    """Reads pingap's JSON log as it grows."""

    def __init__(self, path):
        self.file = open(path, encoding="utf-8", errors="replace")
        self.partial = ""
        self.problems = []  # (when, WARN/ERROR message with numbers blanked)

    def events(self):
        text = self.partial + self.file.read()
        lines = text.split("\n")
        self.partial = lines.pop()
        found = []
        for line in lines:
            try:
                event = json.loads(line)
            except ValueError:
                event = {"level": "TEXT", "fields": {"message": line}}
            fields = event.get("fields", event)
            message = str(fields.get("message", ""))
            level = event.get("level", "")
            if level in ("WARN", "ERROR", "TEXT") and line.strip():
                key = f"{level} {re.sub(r'[0-9]+', 'N', message)[:160]}"
                try:
                    when = datetime.fromisoformat(event["timestamp"]).timestamp()
                except (KeyError, TypeError, ValueError):
                    when = time.time()
                self.problems.append((when, key))
            found.append((message, fields))
        return found

    def reload_outcome(self, deadline):
        """'ok' or 'rejected' from the next reload line in the log, or None by the deadline."""
        while time.monotonic() < deadline:
            for message, _ in self.events():
                if message.startswith("configuration reloaded"):
                    return "ok"
                if message.startswith("configuration reload") and "rejected" in message:
                    return "rejected"
            time.sleep(0.01)
        return None


# ---- /proc --------------------------------------------------------------------------------


def proc_sum(pid, read):
    total = 0
    for p in tree(pid):
        try:
            total += read(p)
        except OSError:
            pass
    return total


def threads(p):
    with open(f"/proc/{p}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("Threads:"))


def open_files_limit(pid):
    with open(f"/proc/{pid}/limits") as f:
        for line in f:
            if line.startswith("Max open files"):
                return int(line.split()[3])
    return 0


def tcp_counts(pingap_port, backend_port):
    """pingap's client connections (established, close-wait) and its upstream connections.

    /proc/net/tcp is read in pieces while connections come and go, so a socket can show up
    twice: each (local, remote) pair is counted once."""
    clients = close_wait = upstream = 0
    seen = set()
    for path in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(path) as f:
            next(f)
            for line in f:
                fields = line.split()
                if (fields[1], fields[2]) in seen:
                    continue
                seen.add((fields[1], fields[2]))
                local = int(fields[1].rsplit(":", 1)[1], 16)
                remote = int(fields[2].rsplit(":", 1)[1], 16)
                state = fields[3]
                if local == pingap_port:
                    clients += state == "01"
                    close_wait += state == "08"
                elif remote == backend_port and state == "01":
                    upstream += 1
    return clients, close_wait, upstream


def load_average():
    with open("/proc/loadavg") as f:
        return f.read().split()[0]


def compilers_running():
    count = 0
    for entry in os.listdir("/proc"):
        try:
            with open(f"/proc/{entry}/comm") as f:
                count += f.read().strip() in ("rustc", "cargo", "cc", "ld", "rust-lld")
        except (OSError, ValueError):
            pass
    return count


# ---- clients --------------------------------------------------------------------------------


def read_response(sock):
    """Reads one response to a GET; returns True if it was a 200 with its whole body."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return False
        data += chunk
    head, body = data.split(b"\r\n\r\n", 1)
    length = re.search(rb"\r\ncontent-length:\s*(\d+)", head, re.I)
    chunked = re.search(rb"\r\ntransfer-encoding:\s*chunked", head, re.I)
    while (len(body) < int(length.group(1))) if length else (chunked and b"0\r\n\r\n" not in body):
        chunk = sock.recv(65536)
        if not chunk:
            return False
        body += chunk
    return head.startswith(b"HTTP/1.1 200")


class IdleConnections:
    """Keep-alive connections that made one request and then stay silent."""

    def __init__(self, port, count, batch=500):
        self.poller = select.poll()
        self.open = {}  # fd -> (socket, opened at)
        self.closed = []  # seconds each was open before the server closed it
        self.failed = 0
        started = time.monotonic()
        for first in range(0, count, batch):
            sockets = []
            for _ in range(min(batch, count - first)):
                s = socket.create_connection(("127.0.0.1", port), timeout=30)
                s.sendall(REQUEST)
                sockets.append(s)
            for s in sockets:
                try:
                    ok = read_response(s)
                except OSError:
                    ok = False
                if not ok:
                    self.failed += 1
                    s.close()
                    continue
                s.setblocking(False)
                self.open[s.fileno()] = (s, time.monotonic())
                self.poller.register(s, select.POLLIN | select.POLLRDHUP | select.POLLHUP)
        self.setup_seconds = time.monotonic() - started

    def check(self):
        """Notices connections the server closed (or wrote to)."""
        for fd, _ in self.poller.poll(0):
            s, opened = self.open.pop(fd)
            self.poller.unregister(fd)
            self.closed.append(time.monotonic() - opened)
            s.close()

    def second_request(self, count):
        """Sends another request on `count` of the still-open connections; returns how many
        answered."""
        answered = 0
        for fd in list(self.open)[:count]:
            s, _ = self.open[fd]
            try:
                s.setblocking(True)
                s.settimeout(10)
                s.sendall(REQUEST)
                answered += read_response(s)
            except OSError:
                pass
        return answered

    def close(self):
        for s, _ in self.open.values():
            s.close()
        self.open.clear()


class SlowClients:
    """Clients that send a request header one byte a second and never finish it; each one
    reconnects when the server closes it."""

    HEADER = b"GET /small HTTP/1.1\r\nHost: soak\r\n"
    FILLER = b"X-Slow: aaaaaaaaaaaa\r\n"

    def __init__(self, port, count):
        self.port, self.count = port, count
        self.cutoffs = []  # (seconds connected, how it ended)
        self.connect_errors = 0
        self.connected = {}  # client -> connected since
        self.stop = threading.Event()
        self.thread = threading.Thread(target=lambda: asyncio.run(self.main()), daemon=True)

    def start(self):
        self.thread.start()

    def finish(self):
        self.stop.set()
        self.thread.join(timeout=10)

    async def main(self):
        await asyncio.gather(*(self.client(i) for i in range(self.count)), return_exceptions=True)

    async def client(self, i):
        await asyncio.sleep(i / self.count)  # spread over a second
        while not self.stop.is_set():
            try:
                reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
            except OSError:
                self.connect_errors += 1
                await asyncio.sleep(1)
                continue
            since = time.monotonic()
            self.connected[i] = since
            try:
                how = await self.dribble(reader, writer)
            finally:
                del self.connected[i]
                writer.close()
            if how is None:
                return
            self.cutoffs.append((time.monotonic() - since, how))

    async def dribble(self, reader, writer):
        """Returns how the server ended the connection, or None when the soak is over."""
        read = asyncio.ensure_future(reader.read(4096))
        try:
            for byte in itertools.chain(self.HEADER, itertools.cycle(self.FILLER)):
                if self.stop.is_set():
                    return None
                try:
                    writer.write(bytes([byte]))
                    await writer.drain()
                except OSError:
                    return "reset on write"
                done, _ = await asyncio.wait({read}, timeout=1)
                if done:
                    try:
                        data = read.result()
                    except OSError:
                        return "reset"
                    if not data:
                        return "closed"
                    return "answered " + data.split(b"\r\n", 1)[0].decode(errors="replace")[9:12]
        finally:
            read.cancel()


class SteadyLoad:
    """wrk with 20 connections in back-to-back runs of at most 30 s until `end`."""

    def __init__(self, url, end, processes):
        self.url, self.end, self.processes = url, end, processes
        self.runs = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def start(self):
        self.thread.start()

    def run(self):
        while not self.stop.is_set():
            seconds = min(WRK_RUN, int(self.end - time.time()))
            if seconds < 2:
                return
            started = time.time()
            process = subprocess.Popen(
                ["taskset", "-c", LOAD_CPU, "wrk", "-t1", f"-c{WRK_CONNECTIONS}", f"-d{seconds}s",
                 "--latency", self.url],
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
            )
            self.processes.append(process)
            out = process.communicate()[0]
            if self.stop.is_set():
                return
            self.runs.append(parse_wrk(out, started) | {"end": time.time()})


def parse_wrk(out, started):
    total = re.search(r"(\d+) requests in", out)
    socket_errors = sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", out))
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    p99 = re.search(r"^\s+99%\s+(\S+)", out, re.M)
    return {
        "start": started,
        "requests": int(total.group(1)) if total else 0,
        "socket_errors": socket_errors,
        "non_2xx": int(non_2xx.group(1)) if non_2xx else 0,
        "rps": float(rps.group(1)) if rps else 0.0,
        "p99": p99.group(1) if p99 else "—",
        "broken": None if total else out.strip()[-300:] or "no output",
    }


# ---- the soak -------------------------------------------------------------------------------


def raise_open_files(needed):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = max(hard, 65536)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, target))
    except (ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < needed:
        sys.exit(f"RLIMIT_NOFILE is {soft}, the soak needs {needed}")
    return soft


def probe_header(port):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", "/small")
        response = conn.getresponse()
        response.read()
        return response.status, response.getheader("X-Soak")
    except (OSError, http.client.HTTPException) as e:
        return None, str(e)
    finally:
        conn.close()


def kill(process, grace):
    if process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=grace)
    except ProcessLookupError:
        pass
    except subprocess.TimeoutExpired:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        process.wait(timeout=10)


def ratio_line(name, samples, key):
    values = [s[key] for s in samples]
    n = len(values)
    middle, last = values[n // 3 : 2 * n // 3], values[2 * n // 3 :]
    if not middle or not last:
        return f"{name}: too few samples to compare", True
    ratio = statistics.mean(last) / statistics.mean(middle)
    flat = ratio <= 1.05
    return (
        f"{name}: mean of the last third {statistics.mean(last):,.1f} / middle third "
        f"{statistics.mean(middle):,.1f} = {ratio:.3f} ({'flat' if flat else 'GROWING'})",
        flat,
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--idle", type=int, default=10_000, help="idle keep-alive connections")
    parser.add_argument("--slow", type=int, default=200, help="slowloris clients")
    parser.add_argument("--no-build", action="store_true", help="use target/release/pingap as it is")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs)")
    args = parser.parse_args()
    for tool in ("nginx", "wrk", "taskset", "cargo"):
        if not shutil.which(tool):
            sys.exit(f"{tool} is missing: apt-get install nginx wrk util-linux")
    # SIGTERM (and Ctrl-C) go through the cleanup in main's finally.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    limit = raise_open_files(args.idle + args.slow + 1000)
    pingap_binary(args.no_build)

    work = tempfile.mkdtemp(prefix="pingap-soak-")
    os.chmod(work, 0o755)  # nginx workers run as an unprivileged user when started as root
    processes, exit_code = [], 1
    try:
        exit_code = soak(args, work, limit, processes)
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        exit_code = 130
    finally:
        for process in reversed(processes):  # wrk runs, then pingap, then the backend
            kill(process, 15)
        if args.keep or exit_code != 0:
            print(f"logs kept in {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    return exit_code


def soak(args, work, limit, processes):
    backend_port, port = free_port(), free_port()
    write(
        f"{work}/backend.conf",
        f"""worker_processes 1; daemon off; pid {work}/backend.pid; error_log {work}/backend.err;
worker_rlimit_nofile 10000;
events {{ worker_connections 8000; }}
http {{
  access_log off; keepalive_requests 100000000; keepalive_timeout 3600s;
  server {{
    listen 127.0.0.1:{backend_port} backlog=4096;
    location / {{ default_type text/plain; return 200 "ok\\n"; }}
  }}
}}
""",
    )
    timeouts = timeouts_supported(work, port, backend_port)
    print(
        "basic.client_header_timeout and send_timeout = 10s: "
        + ("set (pingap -t accepts them)" if timeouts else "NOT set (pingap -t rejects them)")
    )
    config = f"{work}/pingap.toml"
    write_atomically(config, pingap_config(work, port, backend_port, 0, timeouts))

    env = {k: v for k, v in os.environ.items() if k not in ("RUST_LOG", "PINGAP_CONF")}
    log_file = open(f"{work}/backend.log", "w")
    processes.append(subprocess.Popen(
        ["taskset", "-c", LOAD_CPU, "nginx", "-c", f"{work}/backend.conf", "-p", work],
        stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True,
    ))
    pingap_log = open(f"{work}/pingap.log", "w")
    pingap = subprocess.Popen(
        ["taskset", "-c", PROXY_CPU, BINARY, "-c", config],
        stdout=pingap_log, stderr=subprocess.STDOUT, start_new_session=True, env=env,
    )
    processes.append(pingap)
    wait_port(backend_port)
    wait_port(port)
    log = Log(f"{work}/pingap.log")
    log.events()
    pid = pingap.pid  # taskset execs pingap: same pid
    pingap_limit = open_files_limit(pid)
    print(f"RLIMIT_NOFILE: script {limit}, pingap (from /proc/{pid}/limits) {pingap_limit}")
    if pingap_limit < args.idle + args.slow + 500:
        print("pingap's open-files limit is below what the soak needs", file=sys.stderr)
        return 1

    before = {"load": load_average(), "compilers": compilers_running()}
    print(f"opening {args.idle:,} idle keep-alive connections...", flush=True)
    idle = IdleConnections(port, args.idle)
    print(
        f"  {len(idle.open):,} open after one request each, {idle.failed} failed, "
        f"in {idle.setup_seconds:.1f}s"
    )
    slow = SlowClients(port, args.slow)
    start = time.time()
    end = start + args.minutes * 60
    steady = SteadyLoad(f"http://127.0.0.1:{port}/small", end, processes)
    slow.start()
    steady.start()
    print(f"soaking for {args.minutes:g} min (load average {before['load']}, "
          f"{before['compilers']} compiler processes running)", flush=True)

    samples, reloads = [], {"ok": 0, "rejected": 0, "unanswered": 0}
    reload_seconds, stale_headers = [], []
    counter = 0
    next_reload, next_sample = start + RELOAD_EVERY, start
    died = None
    last_cpu = (cpu_seconds(pid), time.time())
    try:
        while True:
            now = time.time()
            if pingap.poll() is not None:
                died = f"pingap exited with {pingap.returncode} after {now - start:.0f}s"
                break
            idle.check()
            if now >= next_sample or now >= end:
                status, header = probe_header(port)
                if status != 200 or header != str(counter):
                    stale_headers.append((round(now - start), status, header, counter))
                clients, close_wait, upstream = tcp_counts(port, backend_port)
                cpu, cpu_at = cpu_seconds(pid), time.time()
                samples.append({
                    "t": now - start,
                    "cpu": 100 * (cpu - last_cpu[0]) / max(cpu_at - last_cpu[1], 1e-3),
                    "rss": memory_mib(pid, "VmRSS"),
                    "fds": proc_sum(pid, lambda p: len(os.listdir(f"/proc/{p}/fd"))),
                    "threads": proc_sum(pid, threads),
                    "clients": clients,
                    "close_wait": close_wait,
                    "upstream": upstream,
                    "idle": len(idle.open),
                    "slow": len(slow.connected),
                    "reloads": reloads["ok"],
                    "load": load_average(),
                })
                last_cpu = (cpu, cpu_at)
                next_sample += SAMPLE_EVERY
                if now >= end:
                    break
            if now >= next_reload:
                counter += 1
                write_atomically(config, pingap_config(work, port, backend_port, counter, timeouts))
                sent = time.monotonic()
                os.kill(pid, signal.SIGHUP)
                outcome = log.reload_outcome(sent + RELOAD_ANSWER_WITHIN)
                reloads[outcome or "unanswered"] += 1
                reload_seconds.append(time.monotonic() - sent)
                next_reload = max(next_reload + RELOAD_EVERY, time.time())
            time.sleep(max(0.0, min(next_reload, next_sample, end) - time.time()))
    except BaseException:
        steady.stop.set()  # no new wrk run once the cleanup starts
        raise
    finally:
        log.events()
        wound_down_at = time.time()
        slow_open = [time.monotonic() - since for since in list(slow.connected.values())]
        slow.finish()
        if died:
            steady.stop.set()
    if died is None:
        steady.thread.join(timeout=WRK_RUN + 30)
    idle.check()
    second = idle.second_request(100) if idle.open else 0
    log.events()
    after = {"load": load_average(), "compilers": compilers_running()}
    idle_open, idle_closed = len(idle.open), list(idle.closed)
    idle.close()

    # ---- report ----
    print(f"\n### pingap soak, {args.minutes:g} min, {os.cpu_count()} CPUs\n")
    print("| t s | RSS MiB | fds | threads | pingap CPU % | client conns | CLOSE_WAIT | upstream conns | idle open | slow open | reloads ok | load1 |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for s in samples:
        print(
            f"| {s['t']:.0f} | {s['rss']:.1f} | {s['fds']:,} | {s['threads']} | {s['cpu']:.0f} | {s['clients']:,} | "
            f"{s['close_wait']} | {s['upstream']} | {s['idle']:,} | {s['slow']} | {s['reloads']} | {s['load']} |"
        )
    print("\n| wrk run starts at s | requests | req/s | p99 | socket errors | non-2xx |")
    print("|---|---|---|---|---|---|")
    for run in steady.runs:
        print(
            f"| {run['start'] - start:.0f} | {run['requests']:,} | {run['rps']:,.0f} | {run['p99']} | "
            f"{run['socket_errors']} | {run['non_2xx']} |"
        )
    requests = sum(r["requests"] for r in steady.runs)
    failed = sum(r["socket_errors"] + r["non_2xx"] for r in steady.runs)
    broken = [r["broken"] for r in steady.runs if r["broken"]]
    cut = [seconds for seconds, _ in slow.cutoffs]
    hows = {}
    for _, how in slow.cutoffs:
        hows[how] = hows.get(how, 0) + 1
    reload_failed = reloads["rejected"] + reloads["unanswered"]

    print("\n### summary\n")
    if died:
        print(f"- FAILED: {died}")
    print(f"- steady load (wrk, {WRK_CONNECTIONS} connections): {requests:,} requests, {failed} failed "
          f"(socket errors + non-2xx){'' if not broken else f', {len(broken)} wrk runs without a result'}")
    print(f"- reloads: {reloads['ok']} ok, {reloads['rejected']} rejected, {reloads['unanswered']} "
          f"without a log line within {RELOAD_ANSWER_WITHIN:.0f}s; SIGHUP to log line median "
          f"{1000 * statistics.median(reload_seconds) if reload_seconds else 0:.0f} ms, max "
          f"{1000 * max(reload_seconds, default=0):.0f} ms")
    print(f"- newest header rule seen by a request at each sample: {len(samples) - len(stale_headers)}/"
          f"{len(samples)}" + (f"; stale: {stale_headers[:5]}" if stale_headers else ""))
    print(f"- slow clients ({args.slow}, one header byte a second): cut off {len(cut)} times"
          + (f", median after {statistics.median(cut):.1f}s (min {min(cut):.1f}, max {max(cut):.1f}); "
             f"how: {', '.join(f'{k} {v}' for k, v in sorted(hows.items()))}" if cut else "")
          + f"; {len(slow_open)} connected at the end"
          + (f" (longest for {max(slow_open):.0f}s)" if slow_open else "")
          + f"; {slow.connect_errors} connect errors")
    print(f"- idle keep-alive connections: {idle_open:,} still open, {len(idle_closed):,} closed by "
          f"pingap" + (f" (median after {statistics.median(idle_closed):.0f}s)" if idle_closed else "")
          + f", {idle.failed} failed their first request; keepalive_timeout 3600s; "
          f"a second request on {min(100, idle_open)} of them: {second} answered")
    rss_line, rss_flat = ratio_line("RSS MiB", samples, "rss")
    fds_line, fds_flat = ratio_line("open fds", samples, "fds")
    print(f"- {rss_line}")
    print(f"- {fds_line}")
    print(f"- load average {before['load']} before, {after['load']} after; compiler processes "
          f"(rustc, cargo, cc, ld) {before['compilers']} before, {after['compilers']} after")
    # wrk closes its connections with requests in flight when a run ends, and closing the slow
    # clients at the end cuts their requests short: pingap logs both as errors, told apart here.
    wrk_end, winding_down = "within 2 s of a wrk run's end", "while winding down (slow clients closed)"
    groups = {"during the soak": {}, wrk_end: {}, winding_down: {}}
    for when, key in log.problems:
        if when >= wound_down_at:
            group = winding_down
        elif any(run["end"] - 2 <= when <= run["end"] + 2 for run in steady.runs):
            group = wrk_end
        else:
            group = "during the soak"
        groups[group][key] = groups[group].get(key, 0) + 1
    for title, problems in groups.items():
        print(f"- pingap's log {title}: {sum(problems.values())} warnings and errors"
              + (" (numbers as N):" if problems else ""))
        for message, count in sorted(problems.items(), key=lambda kv: -kv[1])[:8]:
            print(f"  - {count}× {message}")
    ok = not died and requests > 0 and failed == 0 and not broken and reload_failed == 0 and not stale_headers
    print(f"\n{'PASS' if ok else 'FAIL'}: steady-load failures {failed}, reload failures "
          f"{reload_failed + len(stale_headers)}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
