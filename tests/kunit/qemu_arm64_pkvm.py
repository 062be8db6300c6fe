# SPDX-License-Identifier: GPL-2.0
# kunit.py --qemu_config for the arm64 kernel as a pKVM host: QEMU's virt
# machine with EL2 (TCG emulates it), GICv3, and KVM in protected mode, so
# the suites run beside an initialised pKVM. kunit.py loads this file as if
# it sat in its own qemu_configs/ package, hence the relative import.
from ..qemu_config import QemuArchParams

QEMU_ARCH = QemuArchParams(linux_arch='arm64',
                           kconfig='',
                           qemu_arch='aarch64',
                           kernel_path='arch/arm64/boot/Image',
                           kernel_command_line='console=ttyAMA0 kvm-arm.mode=protected',
                           extra_qemu_params=['-machine', 'virt,virtualization=on,gic-version=3',
                                              '-cpu', 'max', '-smp', '2'])
