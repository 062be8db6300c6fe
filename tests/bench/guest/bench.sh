#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
# The benchmark workload, one TAP test point, the same in every
# configuration and round:
#
# 1. isolate the pages later allocations get (fragment), so that every
#    I/O buffer has one segment per 4 KiB page;
# 2. fio (Debian's, with its libraries, from the initramfs) runs the job
#    files of tests/bench/fio/ in one invocation, one job after the
#    other; each job's exec_prerun/exec_postrun (mark) brackets it with
#    the guest's counters and a MARK to the host on ttyS2;
# 3. the pviommu's map_bench at 1, 4, 16 and 64 pages, bracketed the same
#    way, or, without a pviommu, the kernel's dma_map_benchmark on the
#    spare PCI function.
#
# Everything is printed at the end: info lines and map_bench results as
# they are, the bracket log and fio's JSON gzipped and in base64.
. /etc/bench/conf
DISK=/dev/vda
[ -b "$DISK" ] || { echo "FAIL: no $DISK"; exit 1; }
stty -F /dev/ttyS2 raw -echo || { echo "FAIL: stty ttyS2"; exit 1; }
: >/tmp/bench.log
rc=0

echo "info kernel $(uname -r)"
echo "info cmdline $(cat /proc/cmdline)"
echo "info iommu_class $(ls /sys/class/iommu 2>/dev/null | tr '\n' ' ')"
for g in /sys/kernel/iommu_groups/*; do
	[ -d "$g" ] || continue
	echo "info iommu_group $(basename "$g") type=$(cat "$g/type" 2>/dev/null) devices=$(ls "$g/devices" | tr '\n' ' ')"
done
vda=$(basename "$(readlink -f /sys/block/vda/device/..)" 2>/dev/null)
echo "info disk_pci $vda group=$(basename "$(readlink /sys/bus/pci/devices/$vda/iommu_group 2>/dev/null)" 2>/dev/null)"
q=/sys/block/vda/queue
echo "info queue max_segments=$(cat $q/max_segments) max_segment_size=$(cat $q/max_segment_size) max_sectors_kb=$(cat $q/max_sectors_kb) nr_requests=$(cat $q/nr_requests)"
dmesg | grep -i -E 'pviommu|virtio_iommu|virtio-iommu|iommu:|viot' | head -20 | sed 's/^/info dmesg /'
t=/sys/kernel/debug/pviommu/bounce_threshold
[ -f $t ] && echo "info bounce_threshold $(tr '\n' ' ' <$t)"
echo "info memfree_kb $(sed -n 's/^MemFree: *\([0-9]*\).*/\1/p' /proc/meminfo)"

# fragment holds its pages until power-off: in the background, once it
# has said so.
/usr/local/bin/fragment "$FRAGMENT_MIB" >/tmp/fragment.txt 2>&1 &
i=0
until grep -q '^fragment ' /tmp/fragment.txt 2>/dev/null; do
	kill -0 $! 2>/dev/null && [ $i -lt 600 ] || { echo "FAIL: fragment: $(cat /tmp/fragment.txt)"; exit 1; }
	sleep 0.1
	i=$((i + 1))
done
cat /tmp/fragment.txt
echo "info memfree_kb_after_fragment $(sed -n 's/^MemFree: *\([0-9]*\).*/\1/p' /proc/meminfo)"
# Free pages per order and migrate type: the isolated pages are the
# order-0 Movable ones; the same line after fio says whether they lasted.
echo "info pagetype_before $(grep 'type *Movable' /proc/pagetypeinfo | tr -s ' ')"

# Debian's loader finds the multiarch directories through ld.so.cache,
# which the initramfs has not.
export LD_LIBRARY_PATH=/lib/x86_64-linux-gnu:/usr/lib/x86_64-linux-gnu:/usr/lib/x86_64-linux-gnu/ceph
export DISK RUNTIME
cd /tmp || exit 1
# Which asynchronous engine the kernel allows (io_setup: libaio,
# io_uring_setup: io_uring), without starting fio to find out.
sc=$(/usr/local/bin/syscalls)
echo "info $sc"
AIO_ENGINE=
case $sc in *io_setup=yes*) AIO_ENGINE=libaio ;; *io_uring_setup=yes*) AIO_ENGINE=io_uring ;; esac
export AIO_ENGINE
jobs=""
for f in $FIO_FILES; do
	if [ "$f" = qd16.fio ] && [ -z "$AIO_ENGINE" ]; then
		echo "missing qd16.fio: no asynchronous engine (libaio needs CONFIG_AIO, io_uring CONFIG_IO_URING; the guest kernel has neither)"
		continue
	fi
	jobs="$jobs /etc/bench/fio/$f"
done
echo "info fio $(fio --version) engine_qd16=${AIO_ENGINE:-none} files=$jobs"
fio --output-format=json --output=/tmp/fio.json $jobs >/tmp/fio.out 2>&1 || {
	echo "FAIL: fio exited $?"
	tail -20 /tmp/fio.out
	rc=1
}
echo "info pagetype_after $(grep 'type *Movable' /proc/pagetypeinfo | tr -s ' ')"

bench=/sys/kernel/debug/pviommu/map_bench
if [ -f $bench ] && grep -q "pviommu.mode" /proc/cmdline; then
	for g in $MAPBENCH_PAGES; do
		name=mapbench-g$g
		/usr/local/bin/mark begin $name 1
		if echo "$MAPBENCH_ITERATIONS $g" >$bench; then
			echo "mapbench g=$g $(cat $bench)"
		else
			echo "mapbench g=$g failed"
			rc=1
		fi
		/usr/local/bin/mark end $name 1
	done
else
	# No pviommu: the kernel's dma_map_benchmark on QEMU's pci-testdev
	# (1b36:0005), dma-direct or iommu-dma over virtio-iommu.
	dev=
	for d in /sys/bus/pci/devices/*; do
		[ "$(cat "$d/vendor"):$(cat "$d/device")" = "0x1b36:0x0005" ] && dev=$d
	done
	if [ -n "$dev" ]; then
		echo dma_map_benchmark >"$dev/driver_override"
		echo "$(basename "$dev")" >/sys/bus/pci/drivers_probe
	fi
	if [ -n "$dev" ] && [ -e /sys/kernel/debug/dma_map_benchmark ]; then
		echo "info dmb_device $(basename "$dev") group=$(basename "$(readlink "$dev/iommu_group" 2>/dev/null)")"
		for g in $DMB_PAGES; do
			name=dmb-g$g
			/usr/local/bin/mark begin $name 1
			echo "dmb g=$g $(/usr/local/bin/dma_map_benchmark -t 1 -g "$g" -b 64 -s "$DMB_SECONDS" 2>&1 | tr '\n' ' ')"
			/usr/local/bin/mark end $name 1
		done
	else
		echo "dmb none: no pci-testdev bound to dma_map_benchmark"
	fi
fi

# The serial port costs tens of microseconds a byte under TCG: the
# bracket log and fio's JSON (over 100 KiB) go compressed.
grep "^error" /tmp/bench.log && rc=1
for f in bench.log fio.json; do
	echo "$f.gz.b64 begin"
	gzip -9c /tmp/$f | base64
	echo "$f.gz.b64 end"
done
exit $rc
