#!/usr/bin/env python3
"""bulkhead lab prober: runs a batch of probes from inside one lab host's namespace.

Started by src/lab/probe.ts as `ip netns exec <ns> python3 prober.py`. Reads
one JSON document on stdin and prints one JSON document on stdout.

Probe mode:  {"timeoutMs": 300, "inflight": 128,
              "probes": [{"src": "10.0.0.1", "dst": "10.0.0.2", "proto": "tcp", "port": 80}, ...]}
          -> {"results": [{"result": "open", "ms": 0.41, "detail": "connected"}, ...]}  (same order)

  tcp     connect from src (bound): connected = open, RST = closed, no answer = filtered
  udp     one datagram from src: echo = open, ICMP port unreachable = closed, silence = filtered
  icmp    one echo request (ping socket): echo reply = open, none = filtered
  icmpv6  the same for IPv6
An ICMP unreachable other than port unreachable, or a local drop (EPERM from
the output hook), is "filtered" too; "detail" says which.

Rate mode:   {"mode": "rate", "src": ..., "dst": ..., "port": 80, "seconds": 2, "parallel": 8, "timeoutMs": 1000}
          -> {"connections": 1234, "failures": 0, "seconds": 2.0}
Opens TCP connections back to back (each closed with a reset) until the time is up.

Standard library only. A probe that cannot even start (the source address is
not on this host) is reported as {"error": ...}; one that fails with an
error that is no verdict (ENOBUFS, EINVAL, ...) has result "error".
"""
import errno
import json
import selectors
import socket
import struct
import sys
import time

LINGER_RESET = struct.pack("ii", 1, 0)
PAYLOAD = b"bulkhead-lab-probe"

FILTERED_ERRNOS = {
    errno.EPERM: "local-drop",
    errno.EACCES: "local-drop",
    errno.EHOSTUNREACH: "unreachable",
    errno.ENETUNREACH: "unreachable",
    errno.EHOSTDOWN: "unreachable",
    errno.ENETDOWN: "unreachable",
    errno.ETIMEDOUT: "timeout",
    errno.EPROTO: "unreachable",
}


def family(addr):
    return socket.AF_INET6 if ":" in addr else socket.AF_INET


def classify(err):
    """Maps a socket error to (result, detail). An error that says nothing about
    the path (ENOBUFS: the kernel's neighbour table is full; EINVAL: IPv6's
    way of saying the same) is ("error", name): the lab, not the ruleset, failed."""
    if err == errno.ECONNREFUSED:
        return "closed", "refused"
    if err in FILTERED_ERRNOS:
        return "filtered", FILTERED_ERRNOS[err]
    return "error", errno.errorcode.get(err, str(err)).lower()


class StartError(Exception):
    pass


def start(p):
    """Opens the socket of one probe and sends its first packet.

    Returns (socket, events) to wait on, or (None, (result, detail)) when it is
    already decided."""
    fam = family(p["dst"])
    proto = p["proto"]
    s = None
    try:
        if proto == "tcp":
            s = socket.socket(fam, socket.SOCK_STREAM | socket.SOCK_NONBLOCK)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_RESET)
        elif proto == "udp":
            s = socket.socket(fam, socket.SOCK_DGRAM | socket.SOCK_NONBLOCK)
        elif proto in ("icmp", "icmpv6"):
            ipproto = socket.IPPROTO_ICMPV6 if fam == socket.AF_INET6 else socket.IPPROTO_ICMP
            s = socket.socket(fam, socket.SOCK_DGRAM | socket.SOCK_NONBLOCK, ipproto)
        else:
            raise StartError("unknown protocol %r" % proto)
        try:
            s.bind((p["src"], 0))
        except OSError as e:
            s.close()
            raise StartError("cannot bind source %s: %s" % (p["src"], e.strerror))
        if proto == "tcp":
            err = s.connect_ex((p["dst"], p["port"]))
            if err == 0:
                s.close()
                return None, ("open", "connected")
            if err != errno.EINPROGRESS:
                s.close()
                return None, classify(err)
            return s, selectors.EVENT_WRITE
        if proto == "udp":
            s.connect((p["dst"], p["port"]))
            s.send(PAYLOAD)
            return s, selectors.EVENT_READ
        # ICMP echo request: the kernel fills in the identifier and checksum.
        s.connect((p["dst"], 0))
        s.send(struct.pack("!BBHHH", p["port"], 0, 0, 0, 1) + PAYLOAD)
        return s, selectors.EVENT_READ
    except StartError:
        raise
    except OSError as e:
        if s is not None:
            s.close()
        return None, classify(e.errno)


def finish(p, s):
    """Reads the outcome of a probe whose socket is ready."""
    proto = p["proto"]
    if proto == "tcp":
        err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        return ("open", "connected") if err == 0 else classify(err)
    try:
        data = s.recv(2048)
    except (BlockingIOError, InterruptedError):
        return None
    except OSError as e:
        return classify(e.errno)
    if proto == "udp":
        return "open", "echo"
    if data and data[0] in (0, 129):
        return "open", "echo-reply"
    return None


def run_probes(req):
    probes = req["probes"]
    timeout = max(1, req.get("timeoutMs", 300)) / 1000.0
    inflight = max(1, req.get("inflight", 128))
    results = [None] * len(probes)
    sel = selectors.DefaultSelector()
    pending = {}  # fd -> (index, socket, t0, deadline)
    nxt = 0

    def done(i, t0, outcome):
        results[i] = {"result": outcome[0], "detail": outcome[1], "ms": round((time.monotonic() - t0) * 1000, 2)}

    while nxt < len(probes) or pending:
        while nxt < len(probes) and len(pending) < inflight:
            i = nxt
            nxt += 1
            t0 = time.monotonic()
            try:
                s, what = start(probes[i])
            except StartError as e:
                results[i] = {"error": str(e)}
                continue
            if s is None:
                done(i, t0, what)
            else:
                sel.register(s, what, i)
                pending[s.fileno()] = (i, s, t0, t0 + timeout)
        if not pending:
            continue
        now = time.monotonic()
        wait = max(0.0, min(d for (_, _, _, d) in pending.values()) - now)
        for key, _ in sel.select(wait):
            i, s, t0, _ = pending[key.fd]
            outcome = finish(probes[i], s)
            if outcome is None:
                continue
            done(i, t0, outcome)
            sel.unregister(s)
            s.close()
            del pending[key.fd]
        now = time.monotonic()
        for fd in [fd for fd, v in pending.items() if v[3] <= now]:
            i, s, t0, _ = pending.pop(fd)
            done(i, t0, ("filtered", "timeout"))
            sel.unregister(s)
            s.close()
    return {"results": results}


def run_rate(req):
    """Back-to-back TCP connections for a bounded time, `parallel` at once."""
    seconds = min(max(0.1, float(req["seconds"])), 60.0)
    parallel = max(1, min(int(req.get("parallel", 8)), 256))
    timeout = max(1, req.get("timeoutMs", 1000)) / 1000.0
    fam = family(req["dst"])
    addr = (req["dst"], req["port"])
    sel = selectors.DefaultSelector()
    pending = {}
    ok = fail = 0
    t_start = time.monotonic()
    t_end = t_start + seconds

    def open_one():
        s = socket.socket(fam, socket.SOCK_STREAM | socket.SOCK_NONBLOCK)
        try:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_RESET)
            s.bind((req["src"], 0))
            err = s.connect_ex(addr)
        except OSError:
            err = -1
        if err not in (0, errno.EINPROGRESS):
            s.close()
            return False
        sel.register(s, selectors.EVENT_WRITE)
        pending[s.fileno()] = (s, time.monotonic() + timeout)
        return True

    while True:
        now = time.monotonic()
        if now >= t_end and not pending:
            break
        while now < t_end and len(pending) < parallel:
            if not open_one():
                fail += 1
        wait = max(0.0, min(d for (_, d) in pending.values()) - now) if pending else 0.0
        for key, _ in sel.select(min(wait, max(0.0, t_end - now) + timeout)):
            s, _ = pending.pop(key.fd)
            if s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0:
                ok += 1
            else:
                fail += 1
            sel.unregister(s)
            s.close()
        now = time.monotonic()
        for fd in [fd for fd, v in pending.items() if v[1] <= now]:
            s, _ = pending.pop(fd)
            fail += 1
            sel.unregister(s)
            s.close()
    return {"connections": ok, "failures": fail, "seconds": round(time.monotonic() - t_start, 3)}


def main():
    req = json.load(sys.stdin)
    out = run_rate(req) if req.get("mode") == "rate" else run_probes(req)
    sys.stdout.write(json.dumps(out))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
