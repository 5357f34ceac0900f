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


def listing(numeric=True, fmt=None, exact=False, header=True, only=None, nosort=False, cfg=None):
    cfg = cfg or CFG
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
    svcs = cfg["S"]
    if nosort:
        svcs = cfg["NOSORT"]
    for (lname, lname_n, _, _, sched, _, dests) in svcs:
        if only and lname != only:
            continue
        name = lname if numeric else lname_n
        st = cfg["SVC_STATS"].get(lname, ZERO)
        if fmt == "stats":
            out += "%-33s" % name + "".join(largenum(st[k], exact) for k in
                                            ("conns", "inpkts", "outpkts", "inbytes", "outbytes")) + "\n"
        elif fmt == "rate":
            out += "%-33s" % name + "".join(largenum(st[k], exact) for k in
                                            ("cps", "inpps", "outpps", "inbps", "outbps")) + "\n"
        else:
            out += "%s %s\n" % (name, sched)
        if nosort:
            dests = [dests[i] for i in cfg["KERNEL_ORDER"].get(lname, range(len(dests)))]
        for (dn, dn_n, fwd, w, ut, lt, act, inact, pers, _, tinfo) in dests:
            d = dn if numeric else dn_n
            ds = cfg["DEST_STATS"].get(dn, ZERO)
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


def save(numeric=True, cfg=None):
    cfg = cfg or CFG
    out = ""
    for (_, _, sname, sname_n, _, sopts, dests) in cfg["S"]:
        name = sname if numeric else sname_n
        out += "-A %s %s\n" % (name, sopts)
        # xlb saves FULLNAT local addresses as DPVS's -P lines, in the
        # order added, after the service (DPVS's own -S leaves them out).
        for la in cfg.get("LADDRS", {}).get(sname, []):
            out += "-P %s -z %s\n" % (name, la)
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

CFG = dict(S=S, NOSORT=NOSORT, KERNEL_ORDER=KERNEL_ORDER, SVC_STATS=SVC_STATS, DEST_STATS=DEST_STATS)

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


# ---- rules_modes.txt: FULLNAT, NAT, TUN, long IPv6, fwmark -------------
#
# Sorted as ipvsadm sorts: the three fwmark-0 services first (IPv4 TCP,
# IPv4 UDP, then IPv6: family before protocol), then FWM 100, FWM 200.
# Destinations by address: in the IPv6 service, the IPv4 ipip destination
# first (ipvs_cmp_dests compares ntohl(0xc633644d) - ntohl(0x20010db8) as
# an int: negative, either way round). DR and TUN destinations take the
# service port (10.1.0.2:80, 198.51.100.77:8443); fwmark ones keep theirs
# (10.1.0.22:0). IPv6 names are not cut to 28 or 33 characters: the long
# ones push the columns right. Port names: 80 http, 53 domain, 8080
# http-alt, 443 https; 5353, 6080 and 8443 have none in the built-in table.
V6 = "[2001:db8:aaaa:bbbb:cccc:dddd:eeee:1]:8443"
V6D = "[2001:db8:aaaa:bbbb:cccc:dddd:eeee:ff01]:8443"
M = [
    ("TCP  198.51.100.1:80", "TCP  198.51.100.1:http", "-t 198.51.100.1:80", "-t 198.51.100.1:http",
     "wrr", "-s wrr", [
         ("10.1.0.1:8080", "10.1.0.1:http-alt", "FullNat", 4, 0, 0, 12, 3, 0, "--fullnat -w 4", "n/a"),
         ("10.1.0.2:80", "10.1.0.2:http", "Tunnel", 2, 0, 0, 0, 0, 0, "-i -w 2 --tun-type ipip", "ipip"),
         ("10.1.0.3:80", "10.1.0.3:http", "Route", 0, 0, 0, 0, 0, 0, "-g -w 0", "n/a"),
     ]),
    ("UDP  198.51.100.1:53", "UDP  198.51.100.1:domain", "-u 198.51.100.1:53", "-u 198.51.100.1:domain",
     "sh (sh-port)", "-s sh -b sh-port", [
         ("10.1.0.11:53", "10.1.0.11:domain", "Tunnel", 1, 0, 0, 0, 0, 0,
          "-i -w 1 --tun-type gue --tun-port 6080 --tun-nocsum", "gue:6080:-c"),
         ("10.1.0.12:53", "10.1.0.12:domain", "Tunnel", 1, 0, 0, 0, 0, 0,
          "-i -w 1 --tun-type gre --tun-nocsum", "gre:-c"),
         ("10.1.0.13:5353", "10.1.0.13:5353", "Masq", 1, 0, 0, 0, 0, 0, "-m -w 1", "n/a"),
     ]),
    ("TCP  " + V6, "TCP  " + V6, "-t " + V6, "-t " + V6,
     "wlc persistent 600 mask 48", "-s wlc -p 600 -M 48", [
         ("198.51.100.77:8443", "198.51.100.77:8443", "Tunnel", 3, 0, 0, 0, 4, 1, "-i -w 3 --tun-type ipip", "ipip"),
         (V6D, V6D, "Masq", 1, 50, 20, 1, 2, 5, "-m -w 1", "n/a"),
     ]),
    ("FWM  100", "FWM  100", "-f 100", "-f 100", "rr", "-s rr", [
        ("10.1.0.21:443", "10.1.0.21:https", "Masq", 1, 0, 0, 0, 0, 0, "-m -w 1", "n/a"),
        ("10.1.0.22:0", "10.1.0.22:0", "Route", 1, 0, 0, 0, 0, 0, "-g -w 1", "n/a"),
    ]),
    ("FWM  200 IPv6", "FWM  200 IPv6", "-f 200 -6", "-f 200 -6", "wrr (flag-3)", "-s wrr -b flag-3", [
        ("[2001:db8::21]:80", "[2001:db8::21]:http", "Masq", 2, 0, 0, 0, 0, 0, "-m -w 2", "n/a"),
    ]),
]
# golden_test.go's modesStats has the same numbers: K, M, G and T
# scaling, a rate too wide for %8llu, a service name longer than %-33s.
MCFG = dict(
    S=M,
    # --nosort: services in the order added, destinations newest first.
    NOSORT=M,
    KERNEL_ORDER={"TCP  198.51.100.1:80": [1, 2, 0], "UDP  198.51.100.1:53": [1, 0, 2],
                  "TCP  " + V6: [0, 1], "FWM  100": [0, 1]},
    SVC_STATS={
        "TCP  198.51.100.1:80": dict(conns=100000000, inpkts=5, outpkts=0, inbytes=99999999999,
                                     outbytes=0, cps=7, inpps=8, outpps=9, inbps=12345,
                                     outbps=100000000000000),
        "TCP  " + V6: dict(conns=3, inpkts=4, outpkts=5, inbytes=6, outbytes=7,
                           cps=0, inpps=0, outpps=0, inbps=0, outbps=0),
    },
    DEST_STATS={
        "10.1.0.1:8080": dict(conns=1000000000, inpkts=999999999, outpkts=1, inbytes=2, outbytes=3,
                              cps=4294967296, inpps=1, outpps=2, inbps=0, outbps=1),
        V6D: dict(conns=3, inpkts=4, outpkts=5, inbytes=6, outbytes=7,
                  cps=0, inpps=0, outpps=0, inbps=0, outbps=0),
    },
    LADDRS={"-t 198.51.100.1:80": ["192.168.100.1 -F eth1", "192.168.100.2"]},
)

# -L -c: print_conn's "%-3s %-6s %-11s %-18s %-18s %s\n" (with
# --persistent-conn and a persistence engine, "%-3s %-6s %-11s %-18s %-18s
# %-16s %-18s %s\n"; a row without one keeps the short form, as ipvsadm
# would otherwise print its uninitialised pe_name), expiry as
# "%02d:%02d" of minutes and seconds. Rows as golden_test.go's modesConns.
CONNS = [
    # proto, client, client named, virtual, virtual named, dest, dest named, state, expires, pe name, pe data
    ("TCP", "203.0.113.5:40000", "203.0.113.5:40000", "198.51.100.1:80", "198.51.100.1:http",
     "10.1.0.1:8080", "10.1.0.1:http-alt", "ESTABLISHED", 899, "", ""),
    ("UDP", "203.0.113.6:5353", "203.0.113.6:5353", "198.51.100.1:53", "198.51.100.1:domain",
     "10.1.0.11:53", "10.1.0.11:domain", "UDP", 299, "", ""),
    ("TCP", "[2001:db8:cafe::5]:51000", "[2001:db8:cafe::5]:51000", V6, V6, V6D, V6D, "SYN_RECV", 59, "", ""),
    ("TCP", "203.0.113.7:443", "203.0.113.7:https", "198.51.100.1:80", "198.51.100.1:http",
     "10.1.0.2:80", "10.1.0.2:http", "FIN_WAIT", 120, "", ""),
    ("SCTP", "203.0.113.9:2905", "203.0.113.9:2905", "198.51.100.1:2905", "198.51.100.1:2905",
     "10.1.0.3:2905", "10.1.0.3:2905", "ESTABLISHED", 6000, "", ""),
    ("UDP", "203.0.113.8:5060", "203.0.113.8:5060", "198.51.100.1:53", "198.51.100.1:domain",
     "10.1.0.13:5353", "10.1.0.13:5353", "UDP", 3, "sip", "call-1@example.org"),
]


def conns(numeric=True, persistent=False):
    out = "IPVS connection entries\n"
    if persistent:
        out += "pro expire %-11s %-18s %-18s %-18s %-16s %s\n" % (
            "state", "source", "virtual", "destination", "pe name", "pe_data")
    else:
        out += "pro expire %-11s %-18s %-18s %s\n" % ("state", "source", "virtual", "destination")
    for (pr, c, cn, v, vn, d, dn, state, exp, pe, ped) in CONNS:
        if not numeric:
            c, v, d = cn, vn, dn
        e = "%02d:%02d" % (exp // 60, exp % 60)
        if persistent and pe:
            out += "%-3s %-6s %-11s %-18s %-18s %-16s %-18s %s\n" % (pr, e, state, c, v, d, pe, ped)
        else:
            out += "%-3s %-6s %-11s %-18s %-18s %s\n" % (pr, e, state, c, v, d)
    return out


files = {
    "list_numeric_modes.txt": listing(cfg=MCFG),
    "list_names_modes.txt": listing(numeric=False, cfg=MCFG),
    "list_stats_modes.txt": listing(fmt="stats", cfg=MCFG),
    "list_stats_exact_modes.txt": listing(fmt="stats", exact=True, cfg=MCFG),
    "list_rate_modes.txt": listing(fmt="rate", cfg=MCFG),
    "list_rate_exact_modes.txt": listing(fmt="rate", exact=True, cfg=MCFG),
    "list_thresholds_modes.txt": listing(fmt="thresholds", cfg=MCFG),
    "list_persistent_conn_modes.txt": listing(fmt="persistent", cfg=MCFG),
    "list_tun_info_modes.txt": listing(fmt="tuninfo", cfg=MCFG),
    "list_nosort_modes.txt": listing(nosort=True, cfg=MCFG),
    "list_service_modes.txt": listing(header=False, only="TCP  " + V6, cfg=MCFG),
    "list_fwmark_modes.txt": listing(header=False, only="FWM  200 IPv6", fmt="tuninfo", cfg=MCFG),
    "list_timeout_modes.txt": "Timeout (tcp tcpfin udp): %d %d %d\n" % (1800, 120, 45),
    "save_numeric_modes.txt": save(cfg=MCFG),
    "save_names_modes.txt": save(numeric=False, cfg=MCFG),
    "conns_numeric_modes.txt": conns(),
    "conns_names_modes.txt": conns(numeric=False),
    "conns_persistent_modes.txt": conns(persistent=True),
}
for name, text in files.items():
    with open(name, "w") as f:
        f.write(text)
