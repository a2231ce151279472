#!/usr/bin/env bash
# Installs the Debian packages bulkhead's enforcement backends and kernel tests
# use: nftables, iptables + ipset, iperf3 (dataplane benchmark), conntrack,
# python3 (the lab's listeners and probers), chromium (the map page's browser test).
# Needs root; does nothing when everything is already there.
set -euo pipefail
need=()
for pair in nft:nftables iptables:iptables ipset:ipset iperf3:iperf3 conntrack:conntrack python3:python3 chromium:chromium; do
  command -v "${pair%%:*}" >/dev/null 2>&1 || need+=("${pair##*:}")
done
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ]; then
  echo "install as root: apt-get install ${need[*]}" >&2
  exit 1
fi
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
echo "installed: ${need[*]}"
