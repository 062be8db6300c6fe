#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
# mark begin|end NAME NJOBS: bracket one workload on both sides.
#
# fio runs it as each job's exec_prerun and exec_postrun (after the job's
# buffers exist, before its first I/O; after its last I/O, before the
# buffers go); bench.sh runs it around map_bench. Each side of the
# bracket appends the guest's counters to /tmp/bench.log:
#
#   dbg NAME begin|end k=v ...    the pviommu debugfs counters
#   blk NAME begin|end F1 ..      /sys/block/vda/stat (requests per direction)
#   layout NAME pid=.. pages=.. adjacent=..   (end only, every fio job)
#
# and sends "MARK NAME begin|end" on ttyS2, returning once the host has
# read its counters and CPU times and answered ACK. With NJOBS > 1 the
# first clone to start sends begin (the others wait for its ACK) and the
# last one to finish sends end, so the bracket covers all of them.
phase=$1 name=$2 njobs=${3:-1}
log=/tmp/bench.log
dir=/tmp/marks
mkdir -p "$dir"

counters() {
	# Shell builtins only (read, not cat): a fork costs milliseconds
	# under TCG, and this runs at the bracket's edges.
	line="dbg $name $phase"
	for f in /sys/kernel/debug/pviommu/*; do
		n=${f##*/}
		# Reading hyp_probe or hyp_stats makes hypercalls; map_bench and
		# bounce_threshold are not counters.
		case $n in hyp_probe | hyp_stats | map_bench | bounce_threshold) continue ;; esac
		[ -f "$f" ] && read -r v <"$f" && line="$line $n=$v"
	done
	read -r s </sys/block/vda/stat
	echo "$line" >>$log
	echo "blk $name $phase $s" >>$log
}

send() {
	exec 4<>/dev/ttyS2
	echo "MARK $name $phase" >&4
	read -r ack <&4
	exec 4>&-
	[ "$ack" = ACK ] || echo "error $name: host answered '$ack' to $phase" >>$log
}

# The fio job this runs for: the nearest ancestor named fio.
fio_pid() {
	p=$$
	while [ "$p" -gt 1 ]; do
		read -r c </proc/$p/comm 2>/dev/null
		[ "$c" = fio ] && { echo $p; return; }
		p=$(sed 's/.*) [A-Z] \([0-9]*\).*/\1/' /proc/$p/stat 2>/dev/null)
		[ -n "$p" ] || return
	done
}

layout() {
	pid=$(fio_pid)
	[ -n "$pid" ] && echo "layout $name $(/usr/local/bin/layout "$pid")" >>$log
}

case $phase in
begin)
	if [ "$njobs" -le 1 ] || mkdir "$dir/$name.begin" 2>/dev/null; then
		counters
		send
		touch "$dir/$name.began"
	else
		while [ ! -e "$dir/$name.began" ]; do sleep 0.01; done
	fi
	;;
end)
	# The layout walk (a pagemap read per page) runs outside the
	# bracket when it can: after the end mark for the last (or only)
	# job; the other clones' walks overlap the last one's I/O.
	if [ "$njobs" -gt 1 ]; then
		layout
		i=1
		while ! mkdir "$dir/$name.end.$i" 2>/dev/null; do i=$((i + 1)); done
		[ "$i" -lt "$njobs" ] && exit 0
		counters
		send
	else
		counters
		send
		layout
	fi
	;;
esac
exit 0
