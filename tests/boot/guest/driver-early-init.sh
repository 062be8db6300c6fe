#!/bin/sh
# The driver initialises before any virtio driver registers: its banner
# precedes virtio-pci's registration in the log (initcall order).
first=$(dmesg | grep -n -m1 'pviommu: paravirtual IOMMU driver' | cut -d: -f1)
[ -n "$first" ] || { echo "no pviommu banner"; exit 1; }
# initcall_debug prints every initcall; find virtio_pci's.
virtio=$(dmesg | grep -n -m1 'calling  virtio_pci_driver_init' | cut -d: -f1)
[ -n "$virtio" ] || { echo "virtio_pci_driver_init not in the log (initcall_debug missing?)"; exit 1; }
echo "pviommu banner at log line $first, virtio_pci init at line $virtio"
[ "$first" -lt "$virtio" ]
