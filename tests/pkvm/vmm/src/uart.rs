// SPDX-License-Identifier: GPL-2.0
//! A minimal PL011 UART, transmit only: what Linux's `amba-pl011` driver
//! (console and tty) and `earlycon=pl011` need. The transmit FIFO is
//! always empty, the receive FIFO always empty; the TX interrupt is a
//! level that is high while TXIM is unmasked.

pub const UART_SIZE: u64 = 0x1000;

const DR: u64 = 0x000;
const FR: u64 = 0x018;
const IBRD: u64 = 0x024;
const FBRD: u64 = 0x028;
const LCR_H: u64 = 0x02c;
const CR: u64 = 0x030;
const IFLS: u64 = 0x034;
const IMSC: u64 = 0x038;
const RIS: u64 = 0x03c;
const MIS: u64 = 0x040;
const ICR: u64 = 0x044;
const DMACR: u64 = 0x048;

const FR_TXFE: u32 = 1 << 7;
const FR_RXFE: u32 = 1 << 4;
const INT_TX: u32 = 1 << 5;

/// PrimeCell peripheral and cell IDs at 0xfe0..0xffc: a PL011 r1p5.
const ID: [u8; 8] = [0x11, 0x10, 0x34, 0x00, 0x0d, 0xf0, 0x05, 0xb1];

#[derive(Debug, Default, Clone)]
pub struct Pl011 {
    ibrd: u32,
    fbrd: u32,
    lcr_h: u32,
    cr: u32,
    ifls: u32,
    imsc: u32,
    dmacr: u32,
    /// Bytes written to DR since the last `take_output`.
    out: Vec<u8>,
}

impl Pl011 {
    pub fn new() -> Self {
        Pl011 {
            cr: 0x300,
            ifls: 0x12,
            ..Default::default()
        }
    }

    /// Raw interrupt status: transmit is always ready.
    fn ris(&self) -> u32 {
        INT_TX
    }

    pub fn irq_level(&self) -> bool {
        self.ris() & self.imsc != 0
    }

    pub fn read(&self, offset: u64, data: &mut [u8]) {
        data.fill(0);
        let v = match offset {
            DR => 0,
            FR => FR_TXFE | FR_RXFE,
            IBRD => self.ibrd,
            FBRD => self.fbrd,
            LCR_H => self.lcr_h,
            CR => self.cr,
            IFLS => self.ifls,
            IMSC => self.imsc,
            RIS => self.ris(),
            MIS => self.ris() & self.imsc,
            DMACR => self.dmacr,
            0xfe0..=0xffc => u32::from(ID[((offset - 0xfe0) / 4) as usize]),
            _ => 0,
        };
        let n = data.len().min(4);
        data[..n].copy_from_slice(&v.to_le_bytes()[..n]);
    }

    /// Returns whether the interrupt line may have changed.
    pub fn write(&mut self, offset: u64, data: &[u8]) -> bool {
        let mut b = [0u8; 4];
        let n = data.len().min(4);
        b[..n].copy_from_slice(&data[..n]);
        let v = u32::from_le_bytes(b);
        match offset {
            DR => {
                self.out.push(v as u8);
                false
            }
            IBRD => {
                self.ibrd = v & 0xffff;
                false
            }
            FBRD => {
                self.fbrd = v & 0x3f;
                false
            }
            LCR_H => {
                self.lcr_h = v & 0xff;
                false
            }
            CR => {
                self.cr = v & 0xffff;
                false
            }
            IFLS => {
                self.ifls = v & 0x3f;
                false
            }
            IMSC => {
                self.imsc = v & 0x7ff;
                true
            }
            ICR => true, // TX cannot be cleared while the FIFO is empty
            DMACR => {
                self.dmacr = v & 0x7;
                false
            }
            _ => false,
        }
    }

    pub fn take_output(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn primecell_ids_and_status() {
        let u = Pl011::new();
        let mut id = [0u8; 8];
        for (i, b) in id.iter_mut().enumerate() {
            let mut d = [0u8; 4];
            u.read(0xfe0 + 4 * i as u64, &mut d);
            *b = d[0];
        }
        // amba_device_try_add: cid 0xb105f00d, pid part number 0x011.
        assert_eq!(
            u32::from_le_bytes([id[4], id[5], id[6], id[7]]),
            0xb105_f00d
        );
        assert_eq!(u32::from(id[0]) | (u32::from(id[1] & 0xf) << 8), 0x011);
        let mut d = [0u8; 4];
        u.read(FR, &mut d);
        assert_eq!(u32::from_le_bytes(d), FR_TXFE | FR_RXFE);
    }

    #[test]
    fn transmit_and_interrupt_level() {
        let mut u = Pl011::new();
        for c in b"hi\n" {
            u.write(DR, &[*c, 0, 0, 0]);
        }
        assert_eq!(u.take_output(), b"hi\n");
        assert!(u.take_output().is_empty());
        assert!(!u.irq_level());
        assert!(u.write(IMSC, &INT_TX.to_le_bytes()));
        assert!(u.irq_level());
        let mut d = [0u8; 4];
        u.read(MIS, &mut d);
        assert_eq!(u32::from_le_bytes(d), INT_TX);
        u.write(IMSC, &0u32.to_le_bytes());
        assert!(!u.irq_level());
    }
}
