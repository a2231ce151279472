#!/usr/bin/env python3
"""bulkhead lab agent: the listeners of one lab host, run inside its network namespace.

Started by src/lab/lab.ts as
    ip netns exec <ns> python3 agent.py --run <runid> --host <name> --tcp 22,80 --udp 53

First it sets the namespace's sysctls (forwarding off, rp_filter off, no DAD,
no ICMP rate limits, ping sockets for root), then listens on every TCP port
(accept, then close) and every UDP port (echo each datagram back, from the
address it was sent to), on IPv4 and IPv6 wildcards. It prints one JSON line
({"ready": true, ...} or {"ready": false, "error": ...}) on stdout, closes
stdout and serves until killed. Standard library only; one small process.
"""
import json
import os
import selectors
import socket
import struct
import sys

SYSCTLS = [
    ("net/ipv4/ip_forward", "0"),
    ("net/ipv4/conf/all/rp_filter", "0"),
    ("net/ipv4/conf/default/rp_filter", "0"),
    ("net/ipv6/conf/all/forwarding", "0"),
    ("net/ipv6/conf/all/accept_dad", "0"),
    ("net/ipv6/conf/default/accept_dad", "0"),
    ("net/ipv6/conf/all/accept_ra", "0"),
    ("net/ipv6/conf/default/accept_ra", "0"),
    ("net/ipv6/conf/default/autoconf", "0"),
    ("net/ipv6/conf/default/router_solicitations", "0"),
    # Closed-port answers must not be rate limited, or a burst of UDP probes
    # to a closed port would read as "filtered".
    ("net/ipv4/icmp_ratelimit", "0"),
    ("net/ipv4/icmp_msgs_per_sec", "1000000"),
    ("net/ipv4/icmp_msgs_burst", "1000000"),
    ("net/ipv6/icmp/ratelimit", "0"),
    # ICMP echo probes use ping sockets (SOCK_DGRAM, IPPROTO_ICMP).
    ("net/ipv4/ping_group_range", "0 2147483647"),
]

IP_PKTINFO = getattr(socket, "IP_PKTINFO", 8)


def set_sysctls():
    warnings = []
    for key, value in SYSCTLS:
        try:
            with open("/proc/sys/" + key, "w") as f:
                f.write(value)
        except OSError as e:
            warnings.append("%s: %s" % (key, e.strerror))
    return warnings


def parse_ports(text):
    return [int(p) for p in text.split(",") if p != ""] if text else []


def main():
    args = dict(zip(sys.argv[1::2], sys.argv[2::2]))
    tcp = parse_ports(args.get("--tcp", ""))
    udp = parse_ports(args.get("--udp", ""))
    warnings = set_sysctls()
    sel = selectors.DefaultSelector()
    families = [socket.AF_INET]
    if socket.has_ipv6 and os.path.exists("/proc/sys/net/ipv6"):
        families.append(socket.AF_INET6)
    try:
        for port in tcp:
            for fam in families:
                s = socket.socket(fam, socket.SOCK_STREAM)
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                if fam == socket.AF_INET6:
                    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                s.bind(("::" if fam == socket.AF_INET6 else "0.0.0.0", port))
                s.listen(4096)
                s.setblocking(False)
                sel.register(s, selectors.EVENT_READ, ("tcp", fam))
        for port in udp:
            for fam in families:
                s = socket.socket(fam, socket.SOCK_DGRAM)
                if fam == socket.AF_INET6:
                    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_RECVPKTINFO, 1)
                else:
                    s.setsockopt(socket.IPPROTO_IP, IP_PKTINFO, 1)
                s.bind(("::" if fam == socket.AF_INET6 else "0.0.0.0", port))
                s.setblocking(False)
                sel.register(s, selectors.EVENT_READ, ("udp", fam))
    except OSError as e:
        sys.stdout.write(json.dumps({"ready": False, "error": "listen: %s" % e}) + "\n")
        sys.stdout.flush()
        sys.exit(1)
    sys.stdout.write(json.dumps({"ready": True, "pid": os.getpid(), "warnings": warnings}) + "\n")
    sys.stdout.flush()
    # The parent may go away: never write to stdout or stderr again.
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    os.close(devnull)

    while True:
        for key, _ in sel.select():
            s = key.fileobj
            kind, fam = key.data
            if kind == "tcp":
                # Drain the accept queue; each connection is closed at once.
                while True:
                    try:
                        c, _ = s.accept()
                    except (BlockingIOError, InterruptedError):
                        break
                    except OSError:
                        break
                    c.close()
            else:
                while True:
                    try:
                        data, anc, _, addr = s.recvmsg(65535, 256)
                    except (BlockingIOError, InterruptedError):
                        break
                    except OSError:
                        break
                    # Answer from the address the datagram was sent to, so a
                    # connected client socket accepts the echo.
                    cmsg = []
                    for level, ctype, cdata in anc:
                        if fam == socket.AF_INET and level == socket.IPPROTO_IP and ctype == IP_PKTINFO:
                            # struct in_pktinfo { int ifindex; in_addr spec_dst; in_addr addr; }
                            dst = cdata[8:12]
                            cmsg = [(socket.IPPROTO_IP, IP_PKTINFO, struct.pack("=i4s4s", 0, dst, b"\0" * 4))]
                        elif fam == socket.AF_INET6 and level == socket.IPPROTO_IPV6 and ctype == socket.IPV6_PKTINFO:
                            # struct in6_pktinfo { in6_addr addr; int ifindex; }
                            cmsg = [(socket.IPPROTO_IPV6, socket.IPV6_PKTINFO, cdata[:16] + struct.pack("=i", 0))]
                    try:
                        s.sendmsg([data], cmsg, 0, addr)
                    except OSError:
                        pass  # dropped on the way out (EPERM), unreachable, ...: the probe sees silence


if __name__ == "__main__":
    main()
