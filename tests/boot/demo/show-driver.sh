#!/bin/sh
# What `make run` shows: the driver's boot messages and, once the driver
# has them, its debugfs counters.
echo "kernel: $(uname -r)"
dmesg | grep -i 'pviommu' || { echo "no pviommu messages"; exit 1; }
if [ -d /sys/kernel/debug/pviommu ]; then
	for f in /sys/kernel/debug/pviommu/*; do
		echo "== $f"
		cat "$f"
	done
fi
