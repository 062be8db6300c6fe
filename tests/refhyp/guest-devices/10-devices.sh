#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
# Every device class served by the reference hypervisor's enforcing
# backends (DEVICES, comma-separated virtio ids: net 1, console 3,
# entropy 4, vsock 19) negotiated VIRTIO_F_ACCESS_PLATFORM and maps
# through the pviommu.
. "${LIB:-/etc/refhyp/lib.sh}"
# shellcheck disable=SC2046 # one argument per class
check_classes $(echo "${DEVICES:-1,4,19}" | tr , ' ')
