#!/bin/sh
# Re-make the shipped captures: a 3-node lab, `lab capture --all` at every hop while the client makes
# 2 requests to each node's published port 9090 (6 connections: 3 served by a local task, 3 cross-node).
# Needs root. Usage: captures/make_captures.sh [OUTDIR]   (default: captures/ingress-3node)
set -eu
cd "$(dirname "$0")/.."
OUT=${1:-captures/ingress-3node}
LAB=${LAB:-mesh}
MESHPKT=${MESHPKT:-"python3 -m meshpkt"}

$MESHPKT lab up --name "$LAB" >/dev/null
trap '$MESHPKT lab down --name "$LAB"' EXIT INT TERM

# Warm-up (not captured): move node2's round-robin to my-web.2 and node3's to my-web.3, so that during
# the capture each node serves one request locally and sends one to the next node.
$MESHPKT lab exec --name "$LAB" client -- sh -c '
  curl -s -o /dev/null http://10.211.55.18:9090/
  curl -s -o /dev/null http://10.211.55.22:9090/; curl -s -o /dev/null http://10.211.55.22:9090/'

rm -rf "$OUT"
$MESHPKT lab capture --name "$LAB" --all --out "$OUT" --in client --grace 1 -- sh -c '
  for node in 10.211.55.10 10.211.55.18 10.211.55.22; do
    for i in 1 2; do curl -s http://$node:9090/index1.html; sleep 0.3; done
  done'
du -sh "$OUT"
