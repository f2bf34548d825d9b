"""The POSIX ``sh`` scripts meshpkt runs on a node (nothing is installed there). Pure: text only.

Each script is the whole command of one SSH session: ``sh -c SCRIPT meshpkt ARGS...`` run as root, or
through ``sudo -n`` when the login user is not root. Output is line-based (``@word ...``); files come
back framed as ``@file NAME SIZE`` followed by exactly SIZE raw bytes, so one SSH channel carries text
and pcaps.

Cleanup without meshpkt's help: the capture script reads its stdin (the SSH channel) and stops every
tcpdump when it reads ``stop`` *or* end of file -- the ssh client died, was killed, or the connection
dropped. A watchdog subshell also stops them when the script itself is gone, when the hard time limit
passes, and kills a tap whose file reached the byte limit.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence

PREAMBLE = r"""
PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"
D=/var/run/docker/netns
"""

WRAP = ('s=$1; shift; if [ "$(id -u)" = 0 ]; then exec sh -c "$s" meshpkt "$@"; '
        'elif command -v sudo >/dev/null 2>&1; then exec sudo -n env MESHPKT_SSH="$SSH_CONNECTION" sh -c "$s" meshpkt "$@"; '
        'else echo "@error not root and sudo is not installed"; exit 1; fi')

DISCOVER = PREAMBLE + r"""
echo "@hostname $(hostname 2>/dev/null || uname -n)"
echo "@uid $(id -u)"
for t in sh nsenter tcpdump ip python3 docker iptables-save nft ipvsadm bridge; do
  ok=0
  if command -v "$t" >/dev/null 2>&1; then
    case $t in
      tcpdump) tcpdump --version >/dev/null 2>&1 && ok=1 ;;
      python3) python3 -c 'import socket' >/dev/null 2>&1 && ok=1 ;;
      nsenter) nsenter --version >/dev/null 2>&1 && ok=1 ;;
      *) ok=1 ;;
    esac
  fi
  echo "@tool $t $ok"
done
echo "@ns host -"
ip -j -d addr show 2>/dev/null | tr -d '\n'; echo
if [ -d "$D" ]; then
  for f in "$D"/*; do
    [ -e "$f" ] || continue
    echo "@ns ${f##*/} $f"
    nsenter --net="$f" ip -j -d addr show 2>/dev/null | tr -d '\n'; echo
  done
fi
if command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then
  n=$(docker network ls -q 2>/dev/null)
  [ -n "$n" ] && { echo "@docker-networks"; docker network inspect $n 2>/dev/null | tr -d '\n'; echo; }
  c=$(docker ps -q 2>/dev/null)
  [ -n "$c" ] && { echo "@docker-containers"; docker inspect $c 2>/dev/null | tr -d '\n'; echo; }
fi
echo "@end"
"""

CAPTURE = PREAMBLE + r"""
maxbytes=$1; maxsec=$2; count=$3; snap=$4; shift 4
dir=$(mktemp -d /tmp/meshpkt-cap.XXXXXX) || { echo "@error cannot create a temporary directory"; exit 1; }
main=$$
pids=""
set -- $(echo "${MESHPKT_SSH:-${SSH_CONNECTION:-}}") "$@"  # our own SSH connection: never captured
if [ -n "${MESHPKT_SSH:-${SSH_CONNECTION:-}}" ]; then self="not (tcp and host $1 and port $2 and port $4)"; shift 4
else self=""; fi
stop_taps() { for p in $pids; do kill -INT "$p" 2>/dev/null; done; for p in $pids; do wait "$p" 2>/dev/null; done; }
trap 'stop_taps; rm -rf "$dir"; exit 1' HUP INT TERM PIPE
while [ $# -ge 4 ]; do
  ns=$1; ifc=$2; name=$3; flt=$4; shift 4
  c=""; [ "$count" -gt 0 ] && c="-c $count"
  if [ "$ns" = - ]; then
    [ -n "$self" ] && flt="${flt:+($flt) and }$self"
    tcpdump -i "$ifc" -U --immediate-mode -B 16384 -n -s "$snap" -Z root $c -w "$dir/$name.pcap" ${flt:+"$flt"} 2>"$dir/$name.err" </dev/null &
  else
    nsenter --net="$ns" tcpdump -i "$ifc" -U --immediate-mode -B 16384 -n -s "$snap" -Z root $c -w "$dir/$name.pcap" ${flt:+"$flt"} \
      2>"$dir/$name.err" </dev/null &
  fi
  pids="$pids $!"; echo "$! $name" >>"$dir/.taps"
done
[ -n "$pids" ] || { echo "@error no tap to start"; rm -rf "$dir"; exit 1; }
i=0; left=1
while [ $left = 1 ] && [ $i -lt 100 ]; do
  left=0
  while read -r p n; do
    grep -q "listening on" "$dir/$n.err" 2>/dev/null && continue
    kill -0 "$p" 2>/dev/null && left=1
  done <"$dir/.taps"
  [ $left = 1 ] && sleep 0.1; i=$((i + 1))
done
while read -r p n; do
  if grep -q "listening on" "$dir/$n.err" 2>/dev/null; then echo "@tap $n listening"
  else echo "@tap $n failed $(grep -v '^tcpdump: verbose' "$dir/$n.err" 2>/dev/null | tail -n 1)"; fi
done <"$dir/.taps"
echo "@capturing"
(
  start=$(date +%s)
  while sleep 0.3; do
    if ! kill -0 "$main" 2>/dev/null; then stop_taps; rm -rf "$dir"; exit 0; fi
    if [ "$maxsec" -gt 0 ] && [ $(( $(date +%s) - start )) -ge "$maxsec" ]; then
      for p in $pids; do kill -INT "$p" 2>/dev/null; done
    fi
    alive=0
    while read -r p n; do
      kill -0 "$p" 2>/dev/null || continue
      alive=1
      s=$(wc -c <"$dir/$n.pcap" 2>/dev/null || echo 0)
      [ "$maxbytes" -gt 0 ] && [ "$s" -ge "$maxbytes" ] && kill -INT "$p" 2>/dev/null
    done <"$dir/.taps"
    [ $alive = 0 ] && { echo "@alldone"; exit 0; }
  done
) &
wd=$!
how=eof
while IFS= read -r line; do
  case $line in stop) how=stop; break ;; esac
done
kill "$wd" 2>/dev/null
stop_taps
if [ $how = eof ]; then rm -rf "$dir"; exit 0; fi
echo "@stopped"
while read -r p n; do
  echo "@stats $n $(grep -E 'packets? (captured|received by filter|dropped by kernel)' "$dir/$n.err" | tr '\n' ' ')"
done <"$dir/.taps"
while read -r p n; do
  f="$dir/$n.pcap"; [ -f "$f" ] || continue
  s=$(wc -c <"$f" | tr -d ' '); echo "@file $n.pcap $s"; cat "$f"
done <"$dir/.taps"
echo "@end"
rm -rf "$dir"
"""

COLLECT = PREAMBLE + r"""
t=$(mktemp -d /tmp/meshpkt-col.XXXXXX) || { echo "@error cannot create a temporary directory"; exit 1; }
trap 'rm -rf "$t"; exit 1' HUP INT TERM PIPE
emit() {  # NS FILE ARGV...: run ARGV in NS, frame its stdout and stderr
  ns=$1; fn=$2; shift 2
  if ! command -v "$1" >/dev/null 2>&1; then echo "@res $ns $fn missing 127 0 0"; return; fi
  if [ "$ns" = host ]; then "$@" >"$t/o" 2>"$t/e"; else nsenter --net="$D/$ns" -- "$@" >"$t/o" 2>"$t/e"; fi
  rc=$?; st=ok; [ $rc = 0 ] || st=failed
  echo "@res $ns $fn $st $rc $(wc -c <"$t/o" | tr -d ' ') $(wc -c <"$t/e" | tr -d ' ')"; cat "$t/o" "$t/e"
}
dump() {
  ns=$1
@DUMP@
}
echo "@hostname $(hostname 2>/dev/null || uname -n)"
dump host
if [ -d "$D" ]; then for f in "$D"/*; do [ -e "$f" ] && dump "${f##*/}"; done; fi
if command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then
  n=$(docker network ls -q); [ -n "$n" ] && emit host docker-network-inspect.json docker network inspect $n
  s=$(docker service ls -q 2>/dev/null); [ -n "$s" ] && emit host docker-service-inspect.json docker service inspect $s
fi
echo "@end"
rm -rf "$t"
"""


_REDACT = ("ip xfrm state | sed -E 's/^([[:space:]]*(aead|enc|auth|auth-trunc|comp) [^ ]+ )0x[0-9a-fA-F]+/"
           "\\1(redacted)/'")


def _dump_lines() -> str:
    """The dump commands of :data:`meshpkt.rules.collect.NS_COMMANDS`, as ``emit`` lines (one source of truth;
    xfrm keys are redacted on the node, they never cross the network)."""
    from meshpkt.rules.collect import NS_COMMANDS

    lines = []
    for fname, argv in NS_COMMANDS:
        cmd = f"sh -c {shlex.quote(_REDACT)}" if fname == "ip-xfrm-state.txt" else " ".join(map(shlex.quote, argv))
        lines.append(f'  emit "$ns" {shlex.quote(fname)} {cmd}')
        if fname == "iptables-save.txt":
            lines += ['  if grep -q "iptables-legacy tables present" "$t/o" "$t/e" 2>/dev/null; then',
                      '    emit "$ns" iptables-legacy-save.txt iptables-legacy-save -c', "  fi"]
    return "\n".join(lines)


COLLECT = COLLECT.replace("@DUMP@", _dump_lines())


def remote_command(script: str, args: Sequence[str] = ()) -> str:
    """The one command string handed to ssh: run ``script`` with ``args`` as root (or via ``sudo -n``)."""
    return " ".join(["sh", "-c", shlex.quote(WRAP), "meshpkt", shlex.quote(script),
                     *(shlex.quote(str(a)) for a in args)])


WRITER = r"""
import json, socket, sys, time
job = json.load(sys.stdin)
gap = float(job.get("gap", 0.05))
socks, sent, errors = {}, [], {}
for f in job["frames"]:
    try:
        s = socks.get(f["iface"])
        if s is None:
            s = socks[f["iface"]] = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
            s.bind((f["iface"], 0))
        s.send(bytes.fromhex(f["hex"]))
        sent.append(f["id"])
    except OSError as exc:
        errors[f["id"]] = "%s: %s" % (type(exc).__name__, exc)
    time.sleep(gap)
print(json.dumps({"sent": sent, "errors": errors}))
"""
"""The frame writer run with the node's own python3 (stdlib only): one JSON job on stdin
(``{"gap": s, "frames": [{"id", "iface", "hex"}]}``), one JSON result on stdout."""

WRITE = PREAMBLE + r"""
command -v python3 >/dev/null 2>&1 && python3 -c 'import socket' >/dev/null 2>&1 || { echo "@error no python3"; exit 3; }
exec nsenter --net="$1" python3 -I -c "$2"
"""
"""Run :data:`WRITER` inside the namespace file ``$1`` (``$2`` is the writer's source)."""
