#!/bin/sh
# The guest has what the tests rely on: debugfs, PCI, a second CPU.
[ -d /sys/kernel/debug ] || { echo "debugfs not mounted"; exit 1; }
[ -d /sys/bus/pci/devices ] || { echo "no PCI bus"; exit 1; }
cpus=$(grep -c ^processor /proc/cpuinfo)
echo "cpus: $cpus"
[ "$cpus" -ge 2 ]
