"""meshpkt.bpf: tcpdump/BPF (and Wireshark) filters for fields inside VXLAN.

Expressions are data: :func:`build` turns a typed :class:`FilterSpec` into terms combined
with And/Or (:mod:`meshpkt.bpf.terms`); :func:`render` prints them as pcap-filter or
Wireshark display-filter syntax; :func:`explain` gives the byte map of every term;
:func:`match` evaluates the same expression over meshpkt's packet table with BPF's semantics;
:mod:`meshpkt.bpf.libpcap` compiles and runs expressions with the installed libpcap.
"""

from meshpkt.bpf.hops import filters_for_hops, hop_expr
from meshpkt.bpf.match import evaluate, match
from meshpkt.bpf.render import explain, render
from meshpkt.bpf.spec import FilterSpec, build
from meshpkt.bpf.terms import And, Expr, Or, Term
from meshpkt.errors import UsageError

__all__ = ["FilterSpec", "build", "render", "explain", "match", "evaluate", "filters_for_hops", "hop_expr",
           "Expr", "Term", "And", "Or", "filter_string"]


def filter_string(spec: FilterSpec | None = None, dialect: str = "pcap", **flags: object) -> str:
    """Shortcut: ``filter_string(inner_proto="tcp", inner_host="10.0.0.20")`` -> the pcap filter."""
    s = spec if spec is not None else FilterSpec.from_flags(**flags)
    if dialect not in ("pcap", "wireshark"):
        raise UsageError(f"unknown dialect {dialect!r} (pcap or wireshark)")
    return render(build(s), "pcap" if dialect == "pcap" else "wireshark")
