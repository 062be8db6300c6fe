#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
# Every virtio device class the protected guest has negotiated
# VIRTIO_F_ACCESS_PLATFORM and maps through the pviommu: net (1), block
# (2), console (3), entropy (4), SCSI (8), 9p (9).
. "${LIB:-/etc/refhyp/lib.sh}"
check_classes 1 2 3 4 8 9
