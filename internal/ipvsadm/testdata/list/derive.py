#!/usr/bin/env python3
"""Derives the golden listings in this directory from ipvsadm 1.31's printf
formats (ipvsadm.c: print_title, print_service_entry, print_largenum), with
the rows written out by hand in the order ipvsadm sorts them. Python's %
operator formats as C's printf does for these conversions. The Go code
under test is not involved: run `python3 derive.py` here to rewrite the
.txt files.

The configuration is rules.txt; the runtime figures are those of
golden_test.go's fakeStats.
"""

HDR = "IP Virtual Server version 1.2.1 (size=4096)\n"
TITLE = ("Prot LocalAddress:Port Scheduler Flags\n"
         "  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n")


def largenum(i, exact=False):
    if exact:
        n = len("%d" % i)
        return "%*d" % (9 if n <= 8 else n + 1, i)
    if i < 100000000:
        return "%9d" % i
    if i < 1000000000:
        return "%8dK" % (i // 1000)
    if i < 100000000000:
        return "%8dM" % (i // 1000000)
    if i < 100000000000000:
        return "%8dG" % (i // 1000000000)
    return "%8dT" % (i // 1000000000000)


# Services in ipvsadm's sorted order: fwmark 0 first; IPv4 before IPv6;
# TCP (6) before SCTP (132); 192.168.0.1 before 10.0.0.100 because
# 0x0a000064 - 0xc0a80001 wraps to a positive int; FWM 7 before FWM 42.
# Each: (list name, save name, sched text for -L, save options, dests).
# Dest: (numeric, named, fwd, weight, uthr, lthr, active, inact, persist,
#        save switch and tunnel options, tun info).
S = [
    ("TCP  192.168.0.1:443", "TCP  192.168.0.1:https", "-t 192.168.0.1:443", "-t 192.168.0.1:https",
     "wlc persistent 1800 mask 255.255.255.0", "-s wlc -p 1800 -M 255.255.255.0", [
         ("10.0.1.1:443", "10.0.1.1:https", "Masq", 5, 0, 0, 0, 0, 0, "-m -w 5", "n/a"),
     ]),
    ("TCP  10.0.0.100:80", "TCP  10.0.0.100:http", "-t 10.0.0.100:80", "-t 10.0.0.100:http",
     "rr", "-s rr", [
         # 192.168.0.1 sorts before 10.0.0.11 (wrapping subtraction).
         ("192.168.0.1:8080", "192.168.0.1:http-alt", "Masq", 3, 0, 0, 7, 1234567890, 3, "-m -w 3", "n/a"),
         ("10.0.0.11:80", "10.0.0.11:http", "Route", 1, 0, 0, 0, 0, 0, "-g -w 1", "n/a"),
         ("10.0.0.12:80", "10.0.0.12:http", "Route", 2, 100, 10, 0, 0, 0, "-g -w 2", "n/a"),
     ]),
    ("SCTP 10.0.0.200:9999", "SCTP 10.0.0.200:9999", "--sctp-service 10.0.0.200:9999", "--sctp-service 10.0.0.200:9999",
     "lc", "-s lc", [
         ("10.0.0.201:9999", "10.0.0.201:9999", "Tunnel", 1, 0, 0, 0, 0, 0, "-i -w 1 --tun-type gre --tun-csum", "gre:+c"),
     ]),
    ("UDP  [2001:db8::1]:53", "UDP  [2001:db8::1]:domain", "-u [2001:db8::1]:53", "-u [2001:db8::1]:domain",
     "sh (sh-fallback,sh-port) ops", "-s sh -o -b sh-fallback,sh-port", [
         # An IPv4 tunnel destination of an IPv6 service, port forced to 53;
         # 0x0a090909 sorts before 0x20010db8.
         ("10.9.9.9:53", "10.9.9.9:domain", "Tunnel", 1, 0, 0, 0, 0, 0,
          "-i -w 1 --tun-type gue --tun-port 6080 --tun-remcsum", "gue:6080:r+c"),
         ("[2001:db8::10]:5353", "[2001:db8::10]:5353", "Masq", 0, 0, 0, 0, 0, 0, "-m -w 0", "n/a"),
     ]),
    ("FWM  7 IPv6", "FWM  7 IPv6", "-f 7 -6", "-f 7 -6",
     "rr persistent 60 mask 64", "-s rr -p 60 -M 64", []),
    ("FWM  42", "FWM  42", "-f 42", "-f 42",
     "mh (mh-port) persistent 360", "-s mh -p 360 -b mh-port", [
         ("10.0.0.50:0", "10.0.0.50:0", "Route", 1, 0, 0, 0, 0, 0, "-g -w 1", "n/a"),
     ]),
]

# fakeStats: services and destinations without an entry are all zero.
SVC_STATS = {
    "TCP  10.0.0.100:80": dict(conns=123, inpkts=99999999, outpkts=100000000,
                               inbytes=123456789012, outbytes=1000000000000000,
                               cps=1, inpps=2, outpps=3, inbps=999999999, outbps=1000000000),
}
DEST_STATS = {
    "192.168.0.1:8080": dict(conns=42, inpkts=1, outpkts=2, inbytes=3, outbytes=4,
                             cps=123456789, inpps=5, outpps=6, inbps=100000000000, outbps=0),
}
ZERO = dict(conns=0, inpkts=0, outpkts=0, inbytes=0, outbytes=0,
            cps=0, inpps=0, outpps=0, inbps=0, outbps=0)


def listing(numeric=True, fmt=None, exact=False, header=True, only=None, nosort=False):
    out = HDR if header else ""
    if fmt == "stats":
        out += "%-33s %8s %8s %8s %8s %8s\n  -> RemoteAddress:Port\n" % (
            "Prot LocalAddress:Port", "Conns", "InPkts", "OutPkts", "InBytes", "OutBytes")
    elif fmt == "rate":
        out += "%-33s %8s %8s %8s %8s %8s\n  -> RemoteAddress:Port\n" % (
            "Prot LocalAddress:Port", "CPS", "InPPS", "OutPPS", "InBPS", "OutBPS")
    elif fmt == "thresholds":
        out += "%-33s %-10s %-10s %-10s %-10s\n  -> RemoteAddress:Port\n" % (
            "Prot LocalAddress:Port", "Uthreshold", "Lthreshold", "ActiveConn", "InActConn")
    elif fmt == "persistent":
        out += "%-33s %-9s %-11s %-10s %-10s\n  -> RemoteAddress:Port\n" % (
            "Prot LocalAddress:Port", "Weight", "PersistConn", "ActiveConn", "InActConn")
    elif fmt == "tuninfo":
        out += ("Prot LocalAddress:Port Scheduler Flags\n"
                "  -> RemoteAddress:Port           Forward TunnelInfo    Weight ActiveConn InActConn\n")
    else:
        out += TITLE
    svcs = S
    if nosort:
        svcs = NOSORT
    for (lname, lname_n, _, _, sched, _, dests) in svcs:
        if only and lname != only:
            continue
        name = lname if numeric else lname_n
        st = SVC_STATS.get(lname, ZERO)
        if fmt == "stats":
            out += "%-33s" % name + "".join(largenum(st[k], exact) for k in
                                            ("conns", "inpkts", "outpkts", "inbytes", "outbytes")) + "\n"
        elif fmt == "rate":
            out += "%-33s" % name + "".join(largenum(st[k], exact) for k in
                                            ("cps", "inpps", "outpps", "inbps", "outbps")) + "\n"
        else:
            out += "%s %s\n" % (name, sched)
        if nosort:
            dests = [dests[i] for i in KERNEL_ORDER.get(lname, range(len(dests)))]
        for (dn, dn_n, fwd, w, ut, lt, act, inact, pers, _, tinfo) in dests:
            d = dn if numeric else dn_n
            ds = DEST_STATS.get(dn, ZERO)
            if fmt == "stats":
                out += "  -> %-28s" % d + "".join(largenum(ds[k], exact) for k in
                                                  ("conns", "inpkts", "outpkts", "inbytes", "outbytes")) + "\n"
            elif fmt == "rate":
                out += "  -> %-28s %8d %8d %8d" % (d, ds["cps"], ds["inpps"], ds["outpps"]) + \
                    largenum(ds["inbps"], exact) + largenum(ds["outbps"], exact) + "\n"
            elif fmt == "thresholds":
                out += "  -> %-28s %-10u %-10u %-10u %-10u\n" % (d, ut, lt, act, inact)
            elif fmt == "persistent":
                out += "  -> %-28s %-9u %-11u %-10u %-10u\n" % (d, w, pers, act, inact)
            elif fmt == "tuninfo":
                out += "  -> %-28s %-7s %-13s %-6d %-10u %-10u\n" % (d, fwd, tinfo, w, act, inact)
            else:
                out += "  -> %-28s %-7s %-6d %-10u %-10u\n" % (d, fwd, w, act, inact)
    return out


def save(numeric=True):
    out = ""
    for (_, _, sname, sname_n, _, sopts, dests) in S:
        name = sname if numeric else sname_n
        out += "-A %s %s\n" % (name, sopts)
        for (dn, dn_n, _, _, _, _, _, _, _, sw, _) in dests:
            out += "-a %s -r %s %s\n" % (name, dn if numeric else dn_n, sw)
    return out


# --nosort: services in the order rules.txt adds them (xlb's stand-in for
# the kernel's hash order), destinations newest first.
NOSORT = [S[1], S[0], S[3], S[5], S[4], S[2]]
# Destinations newest first, as indexes into S's (sorted) lists: rules.txt
# adds 10.0.0.11, 192.168.0.1, 10.0.0.12 to 10.0.0.100:80 and
# [2001:db8::10], 10.9.9.9 to [2001:db8::1]:53.
KERNEL_ORDER = {"TCP  10.0.0.100:80": [2, 0, 1], "UDP  [2001:db8::1]:53": [0, 1]}

files = {
    "list_numeric.txt": listing(),
    "list_names.txt": listing(numeric=False),
    "list_stats.txt": listing(fmt="stats"),
    "list_stats_exact.txt": listing(fmt="stats", exact=True),
    "list_rate.txt": listing(fmt="rate"),
    "list_thresholds.txt": listing(fmt="thresholds"),
    "list_persistent_conn.txt": listing(fmt="persistent"),
    "list_tun_info.txt": listing(fmt="tuninfo"),
    "list_nosort.txt": listing(nosort=True),
    "list_service.txt": listing(header=False, only="TCP  10.0.0.100:80", fmt="stats"),
    "list_timeout.txt": "Timeout (tcp tcpfin udp): %d %d %d\n" % (900, 60, 300),
    "save_numeric.txt": save(),
    "save_names.txt": save(numeric=False),
}
for name, text in files.items():
    with open(name, "w") as f:
        f.write(text)
