#!/usr/bin/env python3
"""Side-by-side load benchmark: pingap and nginx as reverse proxies in front of the same nginx
backend, on loopback.

    python3 benches/load.py            # full run (about 5 minutes)
    python3 benches/load.py --quick    # one short round of each mode (a smoke test)

Needs Debian's nginx, wrk and nghttp2-client (h2load), and builds pingap in release mode. The
proxy under test is pinned to CPU 0 with one worker; wrk/h2load and the backend share CPU 1.
Rounds alternate between the proxies (A B A B ...) and the tables give medians. For each run:
requests/s, p50 and p99 latency (h2load reports only the mean), errors, the proxy's CPU time per
request (utime + stime of its process tree from /proc, divided by the requests served) and its
peak RSS, then the ratios pingap/nginx. One HTTP/1.1 mode pipelines: wrk (with a Lua script)
writes 10 requests at a time on each connection, and every response must come back. The last
part opens 10,000 idle keep-alive connections to each proxy (each makes one request, all at
once) and reports RSS right after and `--idle-settle` seconds later (memory the burst of
requests took and freed is then returned, see src/main.rs), and whether requests still succeed.

Options for focused runs (each still side by side in one run, interleaved):

    --modes small,16k,h2c      only these parts (small, 16k, pipelined, h2c, plugins, log, idle)
    --baseline PATH            also run another pingap binary (e.g. a copy of the build before a
                               change) in the same rounds, and print after/before ratios
    --basic 'KEY = VALUE'      extra [basic] settings for the pingap under test only (with
                               --baseline set to the same binary, this compares a setting;
                               `threads = N` replaces the default of one worker thread)
    --baseline-basic 'K = V'   the same for the --baseline pingap
    --profile                  `perf record -e cpu-clock -g` each proxy under the same wrk load
                               (small body; `--profile-path /16k`) and print its kernel/user split
                               in µs per request and the top user-space symbols
    --profile-keep DIR         keep the recordings there (perf-NAME.data) for `perf report -i`
    --profile-dwarf            record call chains from the debug info, so that
                               `perf report --children -i DIR/perf-pingap.data` gives inclusive costs
    log (a mode)               pingap with an access log (combined, to a file) against pingap
                               without one, on the same core
"""

import argparse
import base64
import hashlib
import hmac
import json
import os
import re
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLK_TCK = os.sysconf("SC_CLK_TCK")
PROXY_CPU = "0"
LOAD_CPU = "1"
CONNECTIONS = 50
JWT_SECRET = "benchmark-secret-benchmark-secret"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, deadline=30.0):
    end = time.time() + deadline
    while time.time() < end:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    sys.exit(f"nothing listens on port {port} after {deadline}s")


def tree(pid):
    """The pid and all its descendants."""
    children = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            children.setdefault(int(fields[1]), []).append(int(entry))
        except OSError:
            pass
    found, todo = [], [pid]
    while todo:
        p = todo.pop()
        found.append(p)
        todo.extend(children.get(p, []))
    return found


def cpu_seconds(pid):
    total = 0
    for p in tree(pid):
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime
        except OSError:
            pass
    return total / CLK_TCK


def memory_mib(pid, field):
    """Sum of a /proc/PID/status field (VmRSS or VmHWM) over the tree, in MiB."""
    total = 0
    for p in tree(pid):
        try:
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    if line.startswith(field + ":"):
                        total += int(line.split()[1])
        except OSError:
            pass
    return total / 1024


def spawn(cpu, args, log):
    return subprocess.Popen(
        ["taskset", "-c", cpu] + args,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def jwt_token():
    def b64(data):
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    header = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    claims = b64(json.dumps({"sub": "bench", "exp": int(time.time()) + 86400}).encode())
    signature = hmac.new(JWT_SECRET.encode(), f"{header}.{claims}".encode(), hashlib.sha256)
    return f"{header}.{claims}.{b64(signature.digest())}"


def parse_duration_ms(text):
    match = re.match(r"([\d.]+)(us|ms|s|m|h)$", text)
    if not match:
        sys.exit(f"unexpected latency {text!r} in the load tool's output")
    value, unit = match.groups()
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1e3, "m": 6e4, "h": 3.6e6}[unit]


# HTTP/1.1 pipelining for wrk: each write carries `depth` requests (the script's argument).
PIPELINE_LUA = """
init = function(args)
  local depth = tonumber(args[1]) or 10
  local requests = {}
  for i = 1, depth do requests[i] = wrk.format() end
  batch = table.concat(requests)
end
request = function() return batch end
"""
PIPELINE_DEPTH = 10


def wrk(url, seconds, headers=(), script=None, script_args=()):
    args = ["taskset", "-c", LOAD_CPU, "wrk", "-t1", f"-c{CONNECTIONS}", f"-d{seconds}s", "--latency"]
    for header in headers:
        args += ["-H", header]
    if script:
        args += ["-s", script]
    args.append(url)
    if script_args:
        args += ["--", *script_args]
    out = subprocess.run(args, capture_output=True, text=True, check=True).stdout
    if "requests in" not in out or "50%" not in out:
        sys.exit(f"wrk gave no result for {url}:\n{out}")
    total = int(re.search(r"(\d+) requests in", out).group(1))
    errors = sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", out))
    errors += int(m.group(1)) if (m := re.search(r"Non-2xx or 3xx responses: (\d+)", out)) else 0
    return {
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
        # Anchored: the thread stats above end in "+/- Stdev" percentages such as "77.50%".
        "p50": parse_duration_ms(re.search(r"^\s+50%\s+(\S+)", out, re.M).group(1)),
        "p99": parse_duration_ms(re.search(r"^\s+99%\s+(\S+)", out, re.M).group(1)),
        "requests": total,
        "errors": errors,
    }


def h2load(url, seconds):
    args = ["taskset", "-c", LOAD_CPU, "h2load", "-c", str(CONNECTIONS), "-m", "10", "-D", str(seconds), url]
    out = subprocess.run(args, capture_output=True, text=True, check=True).stdout
    done = re.search(r"requests: (\d+) total, \d+ started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored", out)
    mean = re.search(r"time for request:\s+\S+\s+\S+\s+(\S+)", out).group(1)
    return {
        "rps": float(re.search(r"finished in [\d.]+\w+, ([\d.]+) req/s", out).group(1)),
        "p50": parse_duration_ms(mean),
        "p99": None,
        "requests": int(done.group(2)),
        "errors": int(done.group(4)) + int(done.group(5)),
    }


class Proxy:
    def __init__(self, name, pid):
        self.name = name
        self.pid = pid

    def measure(self, run):
        before = cpu_seconds(self.pid)
        result = run()
        used = cpu_seconds(self.pid) - before
        result["cpu_us"] = used * 1e6 / max(result["requests"], 1)
        return result


def write(path, text):
    with open(path, "w") as f:
        f.write(text)


def pingap_config(work, backend_port, port, access_log=None, basic=""):
    log = f'access_log = "{access_log}"\naccess_log_format = "combined"\n' if access_log else ""
    # One worker thread unless the extra [basic] lines set their own.
    threads = "" if re.search(r"^\s*threads\s*=", basic, re.M) else "threads = 1"
    return f"""[basic]
{threads}
{basic}
log_level = "warn"
upgrade_sock = "{work}/upgrade-{port}.sock"

[upstreams.backend]
addrs = ["127.0.0.1:{backend_port}"]

[locations.plain]
upstream = "backend"

[locations.chain]
upstream = "backend"
path = "/chain/"
rewrite = "/"
plugins = ["request_id", "cors", "allow_all", "jwt", "rate_limit"]

[plugins.request_id]
type = "request_id"

[plugins.cors]
type = "cors"
allow_origins = ["*"]

[plugins.allow_all]
type = "ip_restriction"
allow = ["0.0.0.0/0", "::/0"]

[plugins.jwt]
type = "jwt"
secret = "{JWT_SECRET}"

[plugins.rate_limit]
type = "rate_limit"
rate = "10000000/s"
burst = 10000000

[servers.main]
addr = "127.0.0.1:{port}"
h2c = true
locations = ["plain", "chain"]
{log}"""


def start_all(work, pingaps):
    """Starts the backend, nginx and one pingap per entry of `pingaps` (name → (binary,
    access log path or None)); returns the ports by name, the processes and the proxies."""
    backend_port, nginx_port, nginx_h2_port = (free_port() for _ in range(3))
    os.makedirs(f"{work}/www")
    write(f"{work}/www/16k.txt", "x" * 16383 + "\n")
    os.chmod(f"{work}/www", 0o755)
    os.chmod(f"{work}/www/16k.txt", 0o644)
    write(
        f"{work}/backend.conf",
        f"""worker_processes 1; daemon off; pid {work}/backend.pid; error_log {work}/backend.err;
events {{ worker_connections 30000; }}
http {{
  access_log off; keepalive_requests 1000000;
  server {{
    listen 127.0.0.1:{backend_port} reuseport backlog=4096;
    location = /small {{ default_type text/plain; return 200 "ok\\n"; }}
    location = /16k {{ default_type text/plain; alias {work}/www/16k.txt; }}
  }}
}}
""",
    )
    write(
        f"{work}/nginx.conf",
        f"""worker_processes 1; daemon off; pid {work}/nginx.pid; error_log {work}/nginx.err;
worker_rlimit_nofile 30000;
events {{ worker_connections 25000; }}
http {{
  access_log off; keepalive_requests 1000000;
  upstream backend {{ server 127.0.0.1:{backend_port}; keepalive 64; }}
  server {{
    listen 127.0.0.1:{nginx_port} backlog=4096;
    listen 127.0.0.1:{nginx_h2_port} http2;
    location / {{ proxy_pass http://backend; proxy_http_version 1.1; proxy_set_header Connection ""; }}
  }}
}}
""",
    )
    log = open(f"{work}/processes.log", "w")
    backend = spawn(LOAD_CPU, ["nginx", "-c", f"{work}/backend.conf", "-p", work], log)
    nginx = spawn(PROXY_CPU, ["nginx", "-c", f"{work}/nginx.conf", "-p", work], log)
    ports = {"backend": backend_port, "nginx": nginx_port, "nginx_h2": nginx_h2_port}
    processes, proxies = [backend, nginx], {"nginx": Proxy("nginx", nginx.pid)}
    for name, (binary, access_log, basic) in pingaps.items():
        port = free_port()
        write(f"{work}/{name}.toml", pingap_config(work, backend_port, port, access_log, basic))
        process = spawn(PROXY_CPU, [binary, "-c", f"{work}/{name}.toml"], log)
        processes.append(process)
        proxies[name] = Proxy(name, process.pid)
        ports[name] = port
    for port in ports.values():
        wait_port(port)
    time.sleep(0.5)
    return ports, processes, proxies


def median(results, key):
    values = [r[key] for r in results if r[key] is not None]
    return statistics.median(values) if values else None


def fmt(value, digits=2):
    return "—" if value is None else f"{value:,.{digits}f}"


def table(title, rows):
    print(f"\n### {title}\n")
    print("| | req/s | p50 ms | p99 ms | errors | CPU µs/req | peak RSS MiB |")
    print("|---|---|---|---|---|---|---|")
    for name, results, rss in rows:
        print(
            f"| {name} | {fmt(median(results, 'rps'), 0)} | {fmt(median(results, 'p50'))} | "
            f"{fmt(median(results, 'p99'))} | {sum(r['errors'] for r in results)} | "
            f"{fmt(median(results, 'cpu_us'), 1) if 'cpu_us' in results[0] else '—'} | {fmt(rss, 1)} |"
        )


def ratios(label, ours, theirs):
    def ratio(key):
        a, b = median(ours, key), median(theirs, key)
        return "—" if a is None or b is None or b == 0 else f"{a / b:.2f}×"

    p99 = (
        "—"
        if median(ours, "p99") is None
        else f"{median(ours, 'p99') - median(theirs, 'p99'):+.2f} ms"
    )
    print(
        f"\n{label}: req/s {ratio('rps')}, CPU µs/req {ratio('cpu_us')}, p50 {ratio('p50')}, "
        f"p99 {p99}"
    )


def side_by_side(title, rounds, contenders, direct=None, reference="nginx"):
    """Alternating rounds of each contender (name, Proxy, run) and of `direct` (the ceiling
    without a proxy); prints the medians and the ratios of each contender to `reference` (and
    of pingap to pingap-before when both ran)."""
    direct_results = []
    results = {name: [] for name, _, _ in contenders}
    for _ in range(rounds):
        if direct:
            direct_results.append(direct())
        for name, proxy, run in contenders:
            results[name].append(proxy.measure(run))
    rows = [("no proxy (ceiling)", direct_results, None)] if direct else []
    rows += [(name, results[name], memory_mib(proxy.pid, "VmHWM")) for name, proxy, _ in contenders]
    table(title, rows)
    for name, _, _ in contenders:
        if name != reference:
            ratios(f"{name}/{reference}", results[name], results[reference])
    if "pingap" in results and "pingap-before" in results:
        ratios("pingap/pingap-before", results["pingap"], results["pingap-before"])
    return results


def idle_connections(port, count, check_url):
    """Opens `count` keep-alive connections that each make one request, then idle."""
    sockets = []
    request = b"GET /small HTTP/1.1\r\nHost: bench\r\n\r\n"
    for _ in range(count):
        s = socket.create_connection(("127.0.0.1", port))
        s.sendall(request)
        sockets.append(s)
    answered = 0
    for s in sockets:
        s.settimeout(10)
        data = b""
        while b"ok\n" not in data:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
        answered += b"ok\n" in data
    check = wrk(check_url, 2)
    return sockets, answered, check


def perf_report(data, *extra):
    out = subprocess.run(
        ["perf", "report", "-i", data, "--stdio", "--no-children", "-g", "none", "--percent-limit",
         "0", *extra],
        capture_output=True, text=True, check=True,
    ).stdout
    rows = []
    for line in out.splitlines():
        match = re.match(r"\s*([\d.]+)%\s+(.*)$", line)
        if match:
            rows.append((float(match.group(1)), match.group(2).rstrip()))
    return rows


KERNEL_DSOS = ("[kernel.kallsyms]", "[kernel.vmlinux]")


def symbol_group(sym):
    """The library a `perf report --sort dso,sym` row belongs to: the crate of a Rust symbol,
    jemalloc, or the shared object."""
    dso, _, name = sym.partition(" ")
    name = name.split("]", 1)[-1].strip()
    if not dso.startswith(("pingap", "nginx")):
        return dso
    if name.startswith(("_rjem", "je_")):
        return "jemalloc"
    match = re.match(r"[<&\s]*(?:dyn )?([A-Za-z_][A-Za-z0-9_]*)::", name)
    return match.group(1) if match else f"{dso} (other)"


def profile(name, proxy, run, work, top, call_graph):
    """Records the proxy's whole process tree with perf while `run` loads it, and prints its
    kernel/user split per request and its top user-space symbols. `call_graph` is perf's
    `--call-graph` mode: "fp" (frame pointers, cheap; Rust code built without them gives only the
    leaf reliably) or "dwarf,8192" (full Rust call chains from the debug info, for
    `perf report --children -i` on a kept recording)."""
    data = f"{work}/perf-{name}.data"
    recorder = subprocess.Popen(
        ["perf", "record", "-q", "-e", "cpu-clock", "--call-graph", call_graph, "-o", data,
         "-p", ",".join(str(p) for p in tree(proxy.pid))],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    time.sleep(0.5)
    result = proxy.measure(run)
    recorder.send_signal(2)
    recorder.wait(timeout=60)
    cpu_us = result["cpu_us"]
    by_dso = perf_report(data, "--sort", "dso")
    kernel = sum(share for share, dso in by_dso if dso in KERNEL_DSOS)
    user = 100.0 - kernel
    print(f"\n#### {name}: {result['rps']:,.0f} req/s, {cpu_us:.1f} µs CPU per request\n")
    print(f"kernel {kernel:.1f}% = {cpu_us * kernel / 100:.2f} µs/req, "
          f"user space {user:.1f}% = {cpu_us * user / 100:.2f} µs/req\n")
    print("| share | µs/req | object |")
    print("|---|---|---|")
    for share, dso in by_dso[:8]:
        print(f"| {share:.1f}% | {cpu_us * share / 100:.2f} | {dso} |")
    symbols = [
        (share, sym) for share, sym in perf_report(data, "--sort", "dso,sym")
        if not sym.startswith(KERNEL_DSOS)
    ]
    groups = {}
    for share, sym in symbols:
        group = symbol_group(sym)
        groups[group] = groups.get(group, 0.0) + share
    print("\nUser space by library (crate of the symbol):\n")
    print("| share | µs/req | library |")
    print("|---|---|---|")
    for group, share in sorted(groups.items(), key=lambda g: -g[1])[:12]:
        print(f"| {share:.1f}% | {cpu_us * share / 100:.2f} | {group} |")
    print(f"\nTop {top} user-space symbols:\n")
    print("| share | µs/req | object and symbol |")
    print("|---|---|---|")
    for share, sym in symbols[:top]:
        sym = re.sub(r"\s+", " ", sym).replace("|", "\\|")
        if len(sym) > 110:
            sym = sym[:107] + "..."
        print(f"| {share:.1f}% | {cpu_us * share / 100:.2f} | {sym} |")
    return {"cpu_us": cpu_us, "kernel_us": cpu_us * kernel / 100, "user_us": cpu_us * user / 100}


MODES = ("small", "16k", "pipelined", "h2c", "plugins", "log", "idle")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="one 1-second round per mode")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--idle", type=int, default=10_000, help="idle connections in the last part")
    parser.add_argument("--idle-settle", type=float, default=10,
                        help="seconds between the idle connections' answers and the RSS per connection")
    parser.add_argument("--modes", default=",".join(MODES), help=f"a comma-separated subset of {','.join(MODES)}, or none")
    parser.add_argument("--baseline", help="another pingap binary to run in the same rounds (pingap-before)")
    parser.add_argument("--basic", default="",
                        help="extra lines for the [basic] section of the pingap under test (not of "
                             "--baseline), e.g. 'work_stealing = false', to compare a setting")
    parser.add_argument("--baseline-basic", default="",
                        help="extra lines for the [basic] section of the --baseline pingap")
    parser.add_argument("--profile", action="store_true", help="perf-record each proxy under load")
    parser.add_argument("--profile-dwarf", action="store_true",
                        help="record call chains from the debug info (for inclusive costs with "
                             "`perf report --children`; large recordings, use with --profile-keep)")
    parser.add_argument("--profile-path", default="/small", help="the path loaded while profiling")
    parser.add_argument("--profile-keep", metavar="DIR",
                        help="keep the perf recordings (perf-NAME.data) in DIR for `perf report -i`")
    parser.add_argument("--no-build", action="store_true", help="use target/release/pingap as it is")
    parser.add_argument("--binary", help="the pingap binary to test (implies --no-build)")
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.seconds, args.idle, args.idle_settle = 1, 1, 1_000, 0
    modes = set() if args.modes == "none" else set(args.modes.split(","))
    if modes - set(MODES):
        sys.exit(f"unknown modes: {', '.join(sorted(modes - set(MODES)))}")
    for tool in ("nginx", "wrk", "h2load", "taskset") + (("perf",) if args.profile else ()):
        if not shutil.which(tool):
            sys.exit(f"{tool} is missing: apt-get install nginx wrk nghttp2-client util-linux linux-perf")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

    if not args.no_build and not args.binary:
        print("building pingap (release)...", file=sys.stderr)
        subprocess.run(["cargo", "build", "--release", "-q", "--bin", "pingap"], cwd=ROOT, check=True)
    target = os.environ.get("CARGO_TARGET_DIR", f"{ROOT}/target")
    binary = os.path.abspath(args.binary) if args.binary else f"{target}/release/pingap"

    work = tempfile.mkdtemp(prefix="pingap-bench-")
    # nginx workers run as an unprivileged user when started as root: let them read the files.
    os.chmod(work, 0o755)
    pingaps = {"pingap": (binary, None, args.basic)}
    if args.baseline:
        pingaps["pingap-before"] = (os.path.abspath(args.baseline), None, args.baseline_basic)
    if "log" in modes:
        pingaps["pingap+log"] = (binary, f"{work}/access.log", args.basic)
        if args.baseline:
            pingaps["pingap-before+log"] = (os.path.abspath(args.baseline), f"{work}/access-before.log", args.baseline_basic)
    ports, processes, proxies = start_all(work, pingaps)
    ours = [name for name in ("pingap", "pingap-before") if name in proxies]
    try:
        url = lambda name, path: f"http://127.0.0.1:{ports[name]}{path}"
        token = f"Authorization: Bearer {jwt_token()}"
        pipeline_lua = f"{work}/pipeline.lua"
        write(pipeline_lua, PIPELINE_LUA)
        def pipelined(target, seconds):
            result = wrk(target, seconds, script=pipeline_lua, script_args=[str(PIPELINE_DEPTH)])
            # wrk times a whole batch and prints no usable percentiles for pipelined runs.
            result["p50"] = result["p99"] = None
            return result

        def load(tool, name, path):
            return lambda: tool(url(name, path), args.seconds)

        print(
            f"# pingap vs nginx on {os.cpu_count()} CPUs, {args.rounds} rounds of {args.seconds}s, "
            f"{CONNECTIONS} connections; medians"
        )
        http1 = [
            ("small", "HTTP/1.1, small body", "/small", wrk),
            ("16k", "HTTP/1.1, 16 KiB body", "/16k", wrk),
            ("pipelined", f"HTTP/1.1 pipelined ({PIPELINE_DEPTH} requests per write), small body",
             "/small", pipelined),
        ]
        for mode, title, path, tool in http1:
            if mode in modes:
                side_by_side(
                    title,
                    args.rounds,
                    [(name, proxies[name], load(tool, name, path)) for name in ["nginx"] + ours],
                    direct=load(tool, "backend", path),
                )
        if "h2c" in modes:
            h2_port = {"nginx": "nginx_h2"}
            side_by_side(
                "HTTP/2 without TLS (h2c), small body, h2load -m 10",
                args.rounds,
                [(name, proxies[name], load(h2load, h2_port.get(name, name), "/small"))
                 for name in ["nginx"] + ours],
            )
        if "plugins" in modes:
            plain, chain = [], []
            for _ in range(args.rounds):
                plain.append(proxies["pingap"].measure(load(wrk, "pingap", "/small")))
                chain.append(proxies["pingap"].measure(
                    lambda: wrk(url("pingap", "/chain/small"), args.seconds, [token])))
            table(
                "pingap with five plugins (request_id, cors, ip_restriction, jwt, rate_limit)",
                [("pingap, no plugins", plain, None), ("pingap, five plugins", chain, None)],
            )
            ratios("five plugins/plain", chain, plain)
        if "log" in modes:
            for name in ours:
                side_by_side(
                    f"{name}: access log (combined, to a file) on and off, small body",
                    args.rounds,
                    [(n, proxies[n], load(wrk, n, "/small")) for n in (name, f"{name}+log")],
                    reference=name,
                )
        if args.profile:
            print(f"\n### Profile: perf record -e cpu-clock -g, {args.seconds}s of wrk on "
                  f"{args.profile_path}, CPU time from /proc\n")
            budget = {}
            for name in ["nginx"] + ours:
                budget[name] = profile(name, proxies[name], load(wrk, name, args.profile_path),
                                       work, 15, "dwarf,8192" if args.profile_dwarf else "fp")
            print("\n| | CPU µs/req | kernel µs/req | user-space µs/req |")
            print("|---|---|---|---|")
            for name, b in budget.items():
                print(f"| {name} | {b['cpu_us']:.1f} | {b['kernel_us']:.2f} | {b['user_us']:.2f} |")
            for name in ours:
                n, p = budget["nginx"], budget[name]
                print(f"\n{name}/nginx: CPU {p['cpu_us'] / n['cpu_us']:.2f}×, kernel "
                      f"{p['kernel_us'] / n['kernel_us']:.2f}×, user space "
                      f"{p['user_us'] / n['user_us']:.2f}×")

        if "idle" in modes:
            print(f"\n### {args.idle:,} idle keep-alive connections\n")
            settle = f"{args.idle_settle:g} s later"
            print(f"| | RSS idle MiB | RSS with the idle connections MiB: right after / {settle} | "
                  f"KiB per connection, {settle} | answered | requests meanwhile (errors) |")
            print("|---|---|---|---|---|---|")
            for name in ours + ["nginx"]:
                proxy = proxies[name]
                before = memory_mib(proxy.pid, "VmRSS")
                sockets, answered, check = idle_connections(
                    ports[name], args.idle, url(name, "/small")
                )
                right_after = memory_mib(proxy.pid, "VmRSS")
                time.sleep(args.idle_settle)
                rss = memory_mib(proxy.pid, "VmRSS")
                print(
                    f"| {name} | {before:.1f} | {right_after:.1f} / {rss:.1f} | "
                    f"{(rss - before) * 1024 / args.idle:.1f} | "
                    f"{answered:,}/{args.idle:,} | {check['requests']:,} ({check['errors']}) |"
                )
                for s in sockets:
                    s.close()
                time.sleep(1)
    finally:
        for process in processes:
            try:
                os.killpg(process.pid, 15)
            except ProcessLookupError:
                pass
        for process in processes:
            process.wait(timeout=10)
        if args.profile_keep:
            os.makedirs(args.profile_keep, exist_ok=True)
            for name in os.listdir(work):
                if name.startswith("perf-") and name.endswith(".data"):
                    shutil.move(f"{work}/{name}", f"{args.profile_keep}/{name}")
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
