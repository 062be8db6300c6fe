#!/bin/sh
# The driver is built in and printed its banner with the ABI version.
line=$(dmesg | grep -m1 'pviommu: paravirtual IOMMU driver, ABI ')
[ -n "$line" ] || { echo "no pviommu banner in dmesg"; exit 1; }
echo "$line"
echo "$line" | grep -q 'ABI 2\.2$' || { echo "unexpected ABI version"; exit 1; }
